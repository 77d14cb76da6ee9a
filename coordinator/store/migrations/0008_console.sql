-- Web console: local accounts and sign-in sessions (issue 6). Times are
-- INTEGER microseconds.

-- console_accounts holds local accounts; hash is the PHC-style argon2id
-- string of the password (never the password).
CREATE TABLE console_accounts (
	username TEXT    PRIMARY KEY,
	hash     TEXT    NOT NULL,
	role     TEXT    NOT NULL,
	created  INTEGER NOT NULL,
	disabled INTEGER NOT NULL DEFAULT 0
);

-- console_sessions holds signed-in sessions by the hex SHA-256 of their
-- 256-bit random ID (the cookie's value is never stored).
CREATE TABLE console_sessions (
	id_hash   TEXT    PRIMARY KEY,
	username  TEXT    NOT NULL,
	created   INTEGER NOT NULL,
	expires   INTEGER NOT NULL,
	last_seen INTEGER NOT NULL
);

CREATE INDEX console_sessions_expires ON console_sessions (expires);
CREATE INDEX console_sessions_username ON console_sessions (username);
