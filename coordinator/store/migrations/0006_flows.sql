-- Flow logs: the flow summaries agents report every few seconds. Times
-- are INTEGER microseconds; addresses are text (netip form, '' when
-- unknown); node IDs and names are '' when the reporter did not know the
-- identity. Rows are only ever inserted and deleted (retention), never
-- updated. id increases with every insert, so id order is arrival order.

CREATE TABLE flows (
	id            INTEGER PRIMARY KEY,
	received      INTEGER NOT NULL,
	reporter      TEXT    NOT NULL,
	reporter_name TEXT    NOT NULL,
	direction     TEXT    NOT NULL,
	src           TEXT    NOT NULL,
	dst           TEXT    NOT NULL,
	src_node      TEXT    NOT NULL,
	dst_node      TEXT    NOT NULL,
	src_name      TEXT    NOT NULL,
	dst_name      TEXT    NOT NULL,
	proto         INTEGER NOT NULL,
	dst_port      INTEGER NOT NULL,
	verdict       TEXT    NOT NULL,
	reason        TEXT    NOT NULL,
	rule          TEXT    NOT NULL,
	packets       INTEGER NOT NULL,
	bytes         INTEGER NOT NULL,
	first_seen    INTEGER NOT NULL,
	last_seen     INTEGER NOT NULL
);

CREATE INDEX flows_received ON flows (received);
CREATE INDEX flows_reporter ON flows (reporter, id);
CREATE INDEX flows_src_node ON flows (src_node, id);
CREATE INDEX flows_dst_node ON flows (dst_node, id);
