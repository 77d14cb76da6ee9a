package wire

import (
	"encoding/json"
	"time"
)

// Audit log paths (admin API, scope audit:read).
//
// GET PathAudit lists records, oldest first. Query parameters, all
// optional: action (exact), actor and target (substrings), since (an
// RFC 3339 time or a Go duration meaning that long ago), limit (default
// 100, at most 1000) and after_seq. With after_seq the records after it
// are listed (use it to page through the whole log); without it the
// newest limit records are.
//
// GET PathAuditVerify re-walks the whole hash chain; with
// ?anchor=SEQ:HASH (an earlier answer's Anchor) it also checks that
// record SEQ is still there with that hash.
const (
	PathAudit       = "/api/v1/audit"
	PathAuditVerify = "/api/v1/audit/verify"
)

// AuditRecord is one record of the tamper-evident audit log. Hash is the
// hex SHA-256 over a canonical encoding of the other fields (see the
// coordinator's audit package); PrevHash is the Hash of record Seq-1, ""
// for the first.
type AuditRecord struct {
	Seq    int64     `json:"seq"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	// Summary is a JSON object saying what changed; it never holds a
	// secret.
	Summary  json.RawMessage `json:"summary"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

// AuditVerifyResponse is the result of verifying the audit chain.
type AuditVerifyResponse struct {
	// OK reports an unbroken chain.
	OK bool `json:"ok"`
	// Count is the number of records verified before the break (all of
	// them when OK).
	Count int64 `json:"count"`
	// Head is the hash of the last valid record; keeping a copy of Head
	// and Count elsewhere also detects records removed from the end.
	Head string `json:"head,omitempty"`
	// Anchor is the last valid record as "SEQ:HASH". Passing it back later
	// (GET PathAuditVerify?anchor=SEQ:HASH) makes verification also fail
	// when records were cut off the end or the chain was rewritten.
	Anchor string `json:"anchor,omitempty"`
	// BrokenSeq and Problem name the first broken record when not OK.
	BrokenSeq int64  `json:"broken_seq,omitempty"`
	Problem   string `json:"problem,omitempty"`
}
