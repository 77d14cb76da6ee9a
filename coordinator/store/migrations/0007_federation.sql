-- Workload identity federation: trust rules, and the ID tokens that
-- enrolled nodes (one token, one node). Times are INTEGER microseconds;
-- claims is a JSON object (claim -> pattern), tags a JSON list.

CREATE TABLE trust_rules (
	id           TEXT    PRIMARY KEY,
	name         TEXT    NOT NULL UNIQUE,
	issuer       TEXT    NOT NULL,
	audience     TEXT    NOT NULL,
	claims       TEXT    NOT NULL,
	tags         TEXT    NOT NULL,
	ephemeral    INTEGER NOT NULL,
	-- max_lifetime is the key lifetime of the nodes it enrolls.
	max_lifetime INTEGER NOT NULL,
	created      INTEGER NOT NULL,
	uses         INTEGER NOT NULL DEFAULT 0
);

-- federated_tokens holds the identity of every ID token that enrolled a
-- node (SHA-256 of issuer and jti, or of the whole token), never the
-- token, until keep_until (the token's expiry plus a margin), after which
-- the token is refused by its expiry anyway.
CREATE TABLE federated_tokens (
	id         TEXT    PRIMARY KEY,
	rule_id    TEXT    NOT NULL,
	node_id    TEXT    NOT NULL,
	used       INTEGER NOT NULL,
	keep_until INTEGER NOT NULL
);

CREATE INDEX federated_tokens_keep_until ON federated_tokens (keep_until);

-- trust_rule names the trust rule a node enrolled under ('' for nodes
-- enrolled with an enrollment key).
ALTER TABLE nodes ADD COLUMN trust_rule TEXT NOT NULL DEFAULT '';
