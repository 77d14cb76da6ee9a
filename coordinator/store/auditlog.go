package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
)

// AuditFilter selects audit records. Zero fields select everything.
type AuditFilter struct {
	// Action matches exactly.
	Action string
	// Actor and Target match as substrings.
	Actor  string
	Target string
	// Since keeps records at or after it.
	Since time.Time
	// AfterSeq keeps records with a larger seq and lists the oldest first.
	// Without it (HasAfter false) the newest Limit records are listed,
	// still oldest first.
	AfterSeq int64
	HasAfter bool
	// Limit caps the number of records; 0 means DefaultAuditLimit.
	Limit int
}

// DefaultAuditLimit and MaxAuditLimit bound one page of audit records.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// appendAuditTx appends e to the chain within tx: it reads the last
// record's seq and hash (one index lookup, so appending is O(1)) and
// inserts the sealed record.
func appendAuditTx(ctx context.Context, tx *sql.Tx, e *audit.Entry) error {
	summary, err := audit.EncodeSummary(e.Summary)
	if err != nil {
		return err
	}
	at := e.Time
	if at.IsZero() {
		at = time.Now()
	}
	var (
		lastSeq  int64
		lastHash string
	)
	err = tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&lastSeq, &lastHash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("reading audit chain head: %w", err)
	}
	r := audit.Record{Time: micro(at), Actor: e.Actor, Action: e.Action, Target: e.Target, Summary: summary}
	audit.Seal(&r, lastSeq, lastHash)
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log (seq, time, actor, action, target, summary, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Seq, r.Time.UnixMicro(), r.Actor, r.Action, r.Target, r.Summary, r.PrevHash, r.Hash); err != nil {
		return fmt.Errorf("appending audit record: %w", err)
	}
	return nil
}

// AppendAudit implements Store.
func (s *SQLite) AppendAudit(ctx context.Context, e audit.Entry) error {
	return s.writeTx(audit.With(ctx, e), func(*sql.Tx) error { return nil })
}

const auditColumns = `seq, time, actor, action, target, summary, prev_hash, hash`

func scanAudit(row interface{ Scan(...any) error }) (audit.Record, error) {
	var (
		r  audit.Record
		at int64
	)
	if err := row.Scan(&r.Seq, &at, &r.Actor, &r.Action, &r.Target, &r.Summary, &r.PrevHash, &r.Hash); err != nil {
		return audit.Record{}, err
	}
	r.Time = time.UnixMicro(at).UTC()
	return r, nil
}

// likeEscape escapes s for a LIKE pattern with ESCAPE '\'.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// AuditRecords implements Store.
func (s *SQLite) AuditRecords(ctx context.Context, f AuditFilter) ([]audit.Record, error) {
	var (
		where []string
		args  []any
	)
	if f.Action != "" {
		where = append(where, "action = ?")
		args = append(args, f.Action)
	}
	if f.Actor != "" {
		where = append(where, `actor LIKE ? ESCAPE '\'`)
		args = append(args, "%"+likeEscape(f.Actor)+"%")
	}
	if f.Target != "" {
		where = append(where, `target LIKE ? ESCAPE '\'`)
		args = append(args, "%"+likeEscape(f.Target)+"%")
	}
	if !f.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, f.Since.UnixMicro())
	}
	if f.HasAfter {
		where = append(where, "seq > ?")
		args = append(args, f.AfterSeq)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultAuditLimit
	}
	limit = min(limit, MaxAuditLimit)
	q := `SELECT ` + auditColumns + ` FROM audit_log`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	order := "ASC"
	if !f.HasAfter {
		order = "DESC" // the newest page, reversed below
	}
	q += fmt.Sprintf(` ORDER BY seq %s LIMIT %d`, order, limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing audit records: %w", err)
	}
	defer rows.Close()
	recs := []audit.Record{}
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return nil, fmt.Errorf("listing audit records: %w", err)
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing audit records: %w", err)
	}
	if !f.HasAfter {
		for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 {
			recs[i], recs[j] = recs[j], recs[i]
		}
	}
	return recs, nil
}

// WalkAudit implements Store. It reads in one read transaction, so the
// walk sees one consistent chain even while records are appended.
func (s *SQLite) WalkAudit(ctx context.Context, fn func(audit.Record) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("walking audit log: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit_log ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("walking audit log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return fmt.Errorf("walking audit log: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("walking audit log: %w", err)
	}
	return nil
}

// VerifyAudit walks the whole chain of st with an audit.Verifier. With an
// anchor (a head remembered from an earlier verification) it also
// detects records removed from the end. It returns the verifier (for
// Count and Head) and a *audit.BrokenError for a broken chain.
func VerifyAudit(ctx context.Context, st Store, anchor *audit.Anchor) (*audit.Verifier, error) {
	v := &audit.Verifier{Anchor: anchor}
	if err := st.WalkAudit(ctx, v.Next); err != nil {
		return v, err
	}
	return v, v.Finish()
}
