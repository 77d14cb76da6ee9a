// Package audit defines Latch's tamper-evident audit log: the record every
// state change leaves, the hash chain that links records, and the walk that
// verifies the chain.
//
// Each record carries the hash of the record before it, and its own hash is
// SHA-256 over a canonical, length-prefixed encoding of its sequence
// number, time, actor, action, target, summary and that previous hash. So
// editing any field of a stored record, removing one, inserting one or
// reordering two breaks the chain at the first affected record, and Verify
// names it. (Removing records from the end leaves a shorter valid chain;
// comparing the head hash and count with a copy kept elsewhere detects
// that.)
//
// The store appends records in the same transaction as the change they
// describe: callers attach an Entry to the context of the store call with
// With, and the store writes it just before commit. Summaries never hold a
// secret.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
)

// Actions. A record's action names what changed as <object>.<verb>.
const (
	NodeEnroll        = "node.enroll"
	NodeDelete        = "node.delete"
	KeyCreate         = "key.create"
	KeyRevoke         = "key.revoke"
	TokenCreate       = "token.create"
	TokenRevoke       = "token.revoke"
	TokenDenied       = "token.denied" // a call outside the token's scopes (403)
	PolicySave        = "policy.save"
	PolicyRestore     = "policy.restore"
	AccessRequest     = "access.request"
	AccessAutoApprove = "access.auto_approve"
	AccessApprove     = "access.approve"
	AccessDeny        = "access.deny"
	AccessRevoke      = "access.revoke"
	AccessExpire      = "access.expire"
)

// ActorSystem is the actor of changes the coordinator makes on its own
// (grant expiry).
const ActorSystem = "system"

// canonicalVersionV1 starts every hashed encoding, so a future encoding
// can never collide with this one.
const canonicalVersionV1 = "latch-audit-v1"

// Actor names.

// TokenActor names an admin API token and the user it acts for.
func TokenActor(id, user string) string {
	if user == "" {
		return "token:" + id
	}
	return "token:" + id + " user:" + user
}

// KeyActor names an enrollment key.
func KeyActor(id string) string { return "key:" + id }

// NodeActor names a node.
func NodeActor(id string) string { return "node:" + id }

// Entry is what a caller supplies for one record; the store adds the
// sequence number and the hashes.
type Entry struct {
	// Time is when the change happened; the store uses its own clock when
	// zero. Stored with microsecond resolution.
	Time   time.Time
	Actor  string
	Action string
	Target string
	// Summary says what changed. It is stored as a JSON object with
	// sorted keys. Never put a secret in it.
	Summary map[string]any

	dropped bool // set by Drop: the change turned out to be a no-op
}

// Record is one stored audit record.
type Record struct {
	Seq     int64
	Time    time.Time // UTC, microsecond resolution
	Actor   string
	Action  string
	Target  string
	Summary string // a JSON object
	// PrevHash is the Hash of the record with Seq-1, "" for the first.
	PrevHash string
	// Hash is ComputeHash of the other fields, hex.
	Hash string
}

// EncodeSummary returns the canonical text of a summary: a JSON object
// with sorted keys ("{}" when empty).
func EncodeSummary(m map[string]any) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m) // encoding/json sorts map keys
	if err != nil {
		return "", fmt.Errorf("encoding audit summary: %w", err)
	}
	return string(b), nil
}

// ComputeHash returns the record's hash, hex: SHA-256 over the version
// tag, then seq and time (microseconds since the epoch) as 8-byte
// big-endian integers, then actor, action, target, summary and prev_hash,
// each as an 8-byte big-endian length and its bytes. Length prefixes make
// the encoding unambiguous whatever the fields contain.
func ComputeHash(r Record) string {
	var stack [512]byte // most records fit: no allocation for the encoding
	b := stack[:0]
	str := func(s string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(canonicalVersionV1)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.UnixMicro()))
	str(r.Actor)
	str(r.Action)
	str(r.Target)
	str(r.Summary)
	str(r.PrevHash)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Seal fills in r.Seq, r.PrevHash and r.Hash to follow the record with
// sequence number prevSeq and hash prevHash (0 and "" for the first).
func Seal(r *Record, prevSeq int64, prevHash string) {
	r.Seq = prevSeq + 1
	r.PrevHash = prevHash
	r.Hash = ComputeHash(*r)
}

// Verifier checks a chain one record at a time, in sequence order, in
// constant memory.
//
// Records cut off the end of the chain leave a shorter chain that is still
// consistent, so they can only be detected against a head kept elsewhere:
// an Anchor, a (seq, hash) pair read from an earlier verification.
type Verifier struct {
	// Anchor, when set, must be part of the chain: Finish reports a chain
	// that ends before it or holds another record at its place.
	Anchor *Anchor

	count    int64
	lastSeq  int64
	lastHash string
}

// Anchor is a chain head remembered outside the database: record Seq had
// hash Hash. Its text form is "SEQ:HASH".
type Anchor struct {
	Seq  int64
	Hash string
}

func (a Anchor) String() string { return fmt.Sprintf("%d:%s", a.Seq, a.Hash) }

// ParseAnchor parses "SEQ:HASH" (HASH is 64 lowercase hex digits).
func ParseAnchor(s string) (Anchor, error) {
	seq, hash, ok := strings.Cut(strings.TrimSpace(s), ":")
	n, err := strconv.ParseInt(seq, 10, 64)
	if !ok || err != nil || n < 1 || len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		return Anchor{}, fmt.Errorf("invalid audit anchor %q: want SEQ:HASH, as audit verify prints it", truncate(s, 80))
	}
	return Anchor{Seq: n, Hash: hash}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// BrokenError reports the first record at which the chain breaks.
type BrokenError struct {
	Seq    int64 // the stored seq of the offending record
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit chain broken at record %d: %s", e.Seq, e.Reason)
}

// Next checks r against the records before it. It returns a *BrokenError
// at the first inconsistency; later calls are meaningless after one.
func (v *Verifier) Next(r Record) error {
	switch {
	case r.Seq != v.lastSeq+1:
		if r.Seq > v.lastSeq+1 {
			return &BrokenError{Seq: r.Seq, Reason: fmt.Sprintf("expected record %d next: records removed or reordered", v.lastSeq+1)}
		}
		return &BrokenError{Seq: r.Seq, Reason: fmt.Sprintf("expected record %d next: records out of order", v.lastSeq+1)}
	case r.PrevHash != v.lastHash:
		return &BrokenError{Seq: r.Seq, Reason: "previous hash does not match the record before it: a record was removed, inserted or reordered"}
	case ComputeHash(r) != r.Hash:
		return &BrokenError{Seq: r.Seq, Reason: "hash does not match the record's content: the record was edited"}
	case v.Anchor != nil && r.Seq == v.Anchor.Seq && r.Hash != v.Anchor.Hash:
		return &BrokenError{Seq: r.Seq, Reason: "record differs from the anchor (" + v.Anchor.String() + "): the chain was rewritten from here or before"}
	}
	v.count++
	v.lastSeq = r.Seq
	v.lastHash = r.Hash
	return nil
}

// Finish reports, after the last record, a chain that ends before its
// Anchor: records were removed from the end.
func (v *Verifier) Finish() error {
	if v.Anchor != nil && v.lastSeq < v.Anchor.Seq {
		return &BrokenError{Seq: v.lastSeq + 1, Reason: fmt.Sprintf("the log ends at record %d but the anchor saw record %d: records removed from the end", v.lastSeq, v.Anchor.Seq)}
	}
	return nil
}

// Count returns the number of records verified so far.
func (v *Verifier) Count() int64 { return v.count }

// Head returns the hash of the last record verified, "" if none.
func (v *Verifier) Head() string { return v.lastHash }

// HeadAnchor returns the last record verified as an anchor for later
// verifications; the zero Anchor if none.
func (v *Verifier) HeadAnchor() Anchor { return Anchor{Seq: v.lastSeq, Hash: v.lastHash} }

type entryKey struct{}

// With returns ctx carrying e: the store call made with it appends e in
// the same transaction as its change (and appends nothing if the change
// fails). Attach it only to the one store call it describes.
func With(ctx context.Context, e Entry) context.Context {
	ee := e
	ee.Summary = maps.Clone(e.Summary) // Annotate must not touch the caller's map
	if ee.Summary == nil {
		ee.Summary = map[string]any{}
	}
	return context.WithValue(ctx, entryKey{}, &ee)
}

// FromContext returns the entry attached with With, or nil.
func FromContext(ctx context.Context) *Entry {
	e, _ := ctx.Value(entryKey{}).(*Entry)
	return e
}

// Annotate adds key=value to the summary of the entry attached to ctx, if
// any. The store uses it for facts known only inside the transaction (a
// new policy version).
func Annotate(ctx context.Context, key string, value any) {
	if e := FromContext(ctx); e != nil {
		e.Summary[key] = value
	}
}

// Drop cancels the entry attached to ctx, if any: the store calls it when
// the change turns out to be a no-op that deserves no record.
func Drop(ctx context.Context) {
	if e := FromContext(ctx); e != nil {
		e.dropped = true
	}
}

// Dropped reports whether Drop was called for e.
func (e *Entry) Dropped() bool { return e.dropped }
