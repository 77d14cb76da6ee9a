-- Initial schema. Times are INTEGER microseconds since the Unix epoch;
-- booleans are INTEGER 0/1; lists are JSON text. Keep this portable SQL.

CREATE TABLE meta (
	id                 INTEGER PRIMARY KEY CHECK (id = 1),
	trust_domain       TEXT    NOT NULL,
	ula_prefix         TEXT    NOT NULL,
	-- addr_cursor is the index of the last allocated overlay address.
	addr_cursor        INTEGER NOT NULL,
	-- netmap_version increases with every change to any node's netmap.
	netmap_version     INTEGER NOT NULL,
	-- bootstrap_token_id is set once the bootstrap admin token exists.
	bootstrap_token_id TEXT
);

CREATE TABLE enrollment_keys (
	id          TEXT    PRIMARY KEY,
	secret_hash BLOB    NOT NULL,
	description TEXT    NOT NULL DEFAULT '',
	reusable    INTEGER NOT NULL,
	ephemeral   INTEGER NOT NULL,
	tags        TEXT    NOT NULL,
	created     INTEGER NOT NULL,
	expires     INTEGER NOT NULL,
	revoked     INTEGER,
	uses        INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE api_tokens (
	id          TEXT    PRIMARY KEY,
	secret_hash BLOB    NOT NULL,
	scopes      TEXT    NOT NULL,
	description TEXT    NOT NULL DEFAULT '',
	created     INTEGER NOT NULL,
	expires     INTEGER,
	revoked     INTEGER
);

CREATE TABLE nodes (
	id                TEXT    PRIMARY KEY,
	name              TEXT    NOT NULL UNIQUE,
	hostname          TEXT    NOT NULL,
	wg_key            TEXT    NOT NULL UNIQUE,
	cert_pubkey       BLOB    NOT NULL,
	addr_index        INTEGER NOT NULL UNIQUE,
	ipv4              TEXT    NOT NULL UNIQUE,
	ipv6              TEXT    NOT NULL UNIQUE,
	tags              TEXT    NOT NULL,
	ephemeral         INTEGER NOT NULL,
	created           INTEGER NOT NULL,
	last_seen         INTEGER,
	endpoints         TEXT    NOT NULL,
	enrollment_key_id TEXT    REFERENCES enrollment_keys (id) ON DELETE SET NULL
);

-- retired_addresses holds released overlay addresses: once allocation
-- wraps around the pool, an address is reused only after a hold time.
CREATE TABLE retired_addresses (
	addr_index INTEGER PRIMARY KEY,
	ipv4       TEXT    NOT NULL,
	ipv6       TEXT    NOT NULL,
	node_id    TEXT    NOT NULL,
	released   INTEGER NOT NULL
);

-- retired_node_ids keeps the ID of every deleted node so it is never
-- issued again.
CREATE TABLE retired_node_ids (
	id      TEXT    PRIMARY KEY,
	deleted INTEGER NOT NULL
);
