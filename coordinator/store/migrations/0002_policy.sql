-- Identity-based access policy: versioned policies, just-in-time access
-- requests (grants), the user behind each API token and the owner of
-- each node. Same conventions as 0001; keep this portable SQL.

-- user_name is the person or system the token acts for; policy approvers
-- and groups name users. (Not "user": that is a reserved word in SQL.)
ALTER TABLE api_tokens ADD COLUMN user_name TEXT NOT NULL DEFAULT '';
UPDATE api_tokens SET user_name = 'bootstrap'
	WHERE id = (SELECT bootstrap_token_id FROM meta WHERE id = 1);

-- created_by_user is the user of the token that created the key; nodes it
-- enrolls are owned by that user. Before this migration only admin tokens
-- created keys, and the bootstrap token was the only one handed out.
ALTER TABLE enrollment_keys ADD COLUMN created_by_user TEXT NOT NULL DEFAULT '';
UPDATE enrollment_keys SET created_by_user = 'bootstrap';

-- owner is the created_by_user of the node's enrollment key, copied at
-- enrollment. It is recorded for every node; only untagged nodes have an
-- owner for policy purposes.
ALTER TABLE nodes ADD COLUMN owner TEXT NOT NULL DEFAULT '';
UPDATE nodes SET owner = 'bootstrap' WHERE enrollment_key_id IS NOT NULL;

-- policies holds every saved policy; the highest version is current.
CREATE TABLE policies (
	version INTEGER PRIMARY KEY,
	source  TEXT    NOT NULL,
	created INTEGER NOT NULL,
	author  TEXT    NOT NULL DEFAULT ''
);

-- access_requests holds just-in-time access requests and, once approved,
-- the grants they became. Rows are never deleted: they are the record.
CREATE TABLE access_requests (
	id              TEXT    PRIMARY KEY,
	src_node_id     TEXT    NOT NULL,
	src_name        TEXT    NOT NULL,
	to_service      TEXT    NOT NULL,
	-- port 0 means every port of the service.
	port            INTEGER NOT NULL,
	-- duration in microseconds.
	duration        INTEGER NOT NULL,
	reason          TEXT    NOT NULL,
	state           TEXT    NOT NULL,
	created         INTEGER NOT NULL,
	approver        TEXT    NOT NULL DEFAULT '',
	decided         INTEGER,
	decision_reason TEXT    NOT NULL DEFAULT '',
	expires         INTEGER,
	-- ports is the JSON list of port specs granted, fixed at approval.
	ports           TEXT    NOT NULL DEFAULT '[]',
	-- policy_version is the policy version the approval was checked against.
	policy_version  INTEGER NOT NULL DEFAULT 0,
	-- Revocation keeps the approval's record and adds its own.
	revoked_by      TEXT    NOT NULL DEFAULT '',
	revoked         INTEGER,
	revoke_reason   TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX access_requests_state ON access_requests (state, expires);
CREATE INDEX access_requests_src ON access_requests (src_node_id);
