-- Identity: node key expiry, quarantine, reported posture and certificate
-- expiry; per-key node expiry and use bounds. Times are INTEGER
-- microseconds; booleans INTEGER 0/1; posture is JSON text.

-- key_expiry NULL: the node never expires. key_expired is set (with a
-- netmap bump) once key_expiry has passed, by the expiry sweeper or an
-- admin; netmaps are computed from it, so a netmap version identifies
-- whether the node was expired.
ALTER TABLE nodes ADD COLUMN key_expiry INTEGER;
ALTER TABLE nodes ADD COLUMN key_expired INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN quarantine_reason TEXT NOT NULL DEFAULT '';
-- posture NULL: the node never reported one.
ALTER TABLE nodes ADD COLUMN posture TEXT;
-- cert_expires: NotAfter of the node's current certificate (NULL for
-- nodes enrolled before this migration until they renew).
ALTER TABLE nodes ADD COLUMN cert_expires INTEGER;

CREATE INDEX nodes_key_expiry ON nodes (key_expired, key_expiry);

-- node_expiry NULL: the coordinator's default (--node-key-expiry).
ALTER TABLE enrollment_keys ADD COLUMN node_expiry INTEGER;
ALTER TABLE enrollment_keys ADD COLUMN no_node_expiry INTEGER NOT NULL DEFAULT 0;
-- max_uses 0: unbounded (a reusable key) or one (a one-off key).
ALTER TABLE enrollment_keys ADD COLUMN max_uses INTEGER NOT NULL DEFAULT 0;
