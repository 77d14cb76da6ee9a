-- Web console OIDC sign-in (issue 6): which console account an identity
-- provider's user signs in as. A user is bound by issuer and subject (the
-- provider's stable ID), never by email; an owner sets the binding. Times
-- are INTEGER microseconds.
CREATE TABLE console_oidc_bindings (
	issuer   TEXT    NOT NULL,
	subject  TEXT    NOT NULL,
	username TEXT    NOT NULL UNIQUE,
	created  INTEGER NOT NULL,
	PRIMARY KEY (issuer, subject)
);
