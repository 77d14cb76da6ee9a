-- Keys of revoked nodes. A revoked node is deleted like any other, and its
-- WireGuard public key and certificate public key are kept here so they
-- can never enroll (or authenticate) again. kind is "wireguard" or "cert";
-- key is the key's text form (WireGuard base64, certificate key hex).
-- Same conventions as 0001; keep this portable SQL.
CREATE TABLE revoked_keys (
	kind    TEXT    NOT NULL,
	key     TEXT    NOT NULL,
	node_id TEXT    NOT NULL,
	revoked INTEGER NOT NULL,
	PRIMARY KEY (kind, key)
);
