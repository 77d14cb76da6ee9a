-- Tamper-evident audit log (see package audit). One row per state change,
-- appended in the same transaction as the change. seq is assigned by the
-- coordinator (last seq + 1), not by the database, because it is part of
-- the hashed content. time is integer microseconds like every other time.
-- Same conventions as 0001; keep this portable SQL.
CREATE TABLE audit_log (
	seq       INTEGER PRIMARY KEY,
	time      INTEGER NOT NULL,
	actor     TEXT    NOT NULL,
	action    TEXT    NOT NULL,
	target    TEXT    NOT NULL,
	summary   TEXT    NOT NULL,
	prev_hash TEXT    NOT NULL,
	hash      TEXT    NOT NULL
);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_time ON audit_log (time);
