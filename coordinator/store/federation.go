package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/latchnet/latch/wire"
)

// ErrTokenReplayed reports an ID token that already enrolled a node.
var ErrTokenReplayed = errors.New("ID token already used to enroll a node")

// TokenReplayMargin is how long past its expiry a used ID token's identity
// is kept: longer than any verification leeway, so a token is refused as
// replayed until it is refused as expired.
const TokenReplayMargin = 10 * time.Minute

// Audit actions of workload identity federation.
const (
	AuditTrustRuleCreate = "trust_rule.create"
	AuditTrustRuleDelete = "trust_rule.delete"
	// AuditEnrollRefused records a refused federated enrollment and why.
	AuditEnrollRefused = "node.enroll_refused"
)

// FederatedEnrollment authorizes an Enrollment by a verified workload
// identity token instead of an enrollment key (KeyID and SecretHash are
// then empty). The node gets the rule's tags (or the requested subset),
// its ephemerality and a key expiry of its MaxLifetime.
type FederatedEnrollment struct {
	// RuleID is the trust rule the token satisfied; the enrollment fails
	// with ErrNotFound if it was deleted meanwhile.
	RuleID string
	// TokenID identifies the token (see federation.Result.TokenID); a
	// second enrollment with the same TokenID fails with ErrTokenReplayed.
	TokenID string
	// TokenExpires is the token's expiry.
	TokenExpires time.Time
}

const trustRuleColumns = `id, name, issuer, audience, claims, tags, ephemeral, max_lifetime, created, uses`

func scanTrustRule(row interface{ Scan(...any) error }) (wire.TrustRule, error) {
	var (
		r            wire.TrustRule
		claims, tags string
		lifetime     int64
		created      sql.NullInt64
	)
	if err := row.Scan(&r.ID, &r.Name, &r.Issuer, &r.Audience, &claims, &tags, &r.Ephemeral, &lifetime, &created, &r.Uses); err != nil {
		return wire.TrustRule{}, err
	}
	if err := json.Unmarshal([]byte(claims), &r.Claims); err != nil {
		return wire.TrustRule{}, fmt.Errorf("trust rule %s claims: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(tags), &r.Tags); err != nil {
		return wire.TrustRule{}, fmt.Errorf("trust rule %s tags: %w", r.ID, err)
	}
	r.MaxLifetime = time.Duration(lifetime) * time.Microsecond
	r.Created = fromDB(created)
	return r, nil
}

// CreateTrustRule implements Store.
func (s *SQLite) CreateTrustRule(ctx context.Context, r wire.TrustRule) error {
	if r.ID == "" || r.Name == "" || r.MaxLifetime <= 0 {
		return errors.New("creating trust rule: empty ID or name, or no lifetime")
	}
	claims, err := json.Marshal(r.Claims)
	if err != nil {
		return fmt.Errorf("creating trust rule: %w", err)
	}
	tags, err := json.Marshal(nonNilTags(r.Tags))
	if err != nil {
		return fmt.Errorf("creating trust rule: %w", err)
	}
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		var taken int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM trust_rules WHERE id = ? OR name = ?`, r.ID, r.Name).Scan(&taken); err != nil {
			return err
		}
		if taken > 0 {
			return fmt.Errorf("trust rule %q: %w", r.Name, ErrAlreadyExists)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO trust_rules (`+trustRuleColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`,
			r.ID, r.Name, r.Issuer, r.Audience, string(claims), string(tags), r.Ephemeral, r.MaxLifetime.Microseconds(), toDB(r.Created))
		return err
	})
	if err != nil {
		return fmt.Errorf("creating trust rule: %w", err)
	}
	return nil
}

// TrustRules implements Store.
func (s *SQLite) TrustRules(ctx context.Context) ([]wire.TrustRule, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+trustRuleColumns+` FROM trust_rules ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("listing trust rules: %w", err)
	}
	defer rows.Close()
	var out []wire.TrustRule
	for rows.Next() {
		r, err := scanTrustRule(rows)
		if err != nil {
			return nil, fmt.Errorf("listing trust rules: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing trust rules: %w", err)
	}
	return out, nil
}

// DeleteTrustRule implements Store.
func (s *SQLite) DeleteTrustRule(ctx context.Context, id string) (wire.TrustRule, error) {
	var r wire.TrustRule
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		r, err = scanTrustRule(tx.QueryRowContext(ctx, `SELECT `+trustRuleColumns+` FROM trust_rules WHERE id = ? OR name = ?`, id, id))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM trust_rules WHERE id = ?`, r.ID)
		return err
	})
	if err != nil {
		return wire.TrustRule{}, fmt.Errorf("deleting trust rule %s: %w", id, err)
	}
	return r, nil
}

// NodeTrustRules implements Store.
func (s *SQLite) NodeTrustRules(ctx context.Context) (map[wire.NodeID]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, trust_rule FROM nodes WHERE trust_rule <> ''`)
	if err != nil {
		return nil, fmt.Errorf("listing node trust rules: %w", err)
	}
	defer rows.Close()
	out := map[wire.NodeID]string{}
	for rows.Next() {
		var id wire.NodeID
		var rule string
		if err := rows.Scan(&id, &rule); err != nil {
			return nil, fmt.Errorf("listing node trust rules: %w", err)
		}
		out[id] = rule
	}
	return out, rows.Err()
}

// enrollmentKeyTx authorizes an enrollment within Enroll's transaction:
// by its enrollment key, or by its trust rule and token when federated.
func (s *SQLite) enrollmentKeyTx(ctx context.Context, tx *sql.Tx, e Enrollment) (EnrollmentKey, error) {
	if e.Federated == nil {
		return s.checkKeyTx(ctx, tx, e)
	}
	return federatedKeyTx(ctx, tx, e)
}

// federatedKeyTx records the token (refusing a replay), counts the rule's
// use and returns the rule as the enrollment key it stands for: no ID (the
// node references no enrollment key), the rule's tags and ephemerality,
// and its MaxLifetime as node expiry.
func federatedKeyTx(ctx context.Context, tx *sql.Tx, e Enrollment) (EnrollmentKey, error) {
	f := e.Federated
	if f.RuleID == "" || f.TokenID == "" || e.KeyID != "" {
		return EnrollmentKey{}, errors.New("federated enrollment needs a rule and token ID and no enrollment key")
	}
	r, err := scanTrustRule(tx.QueryRowContext(ctx, `SELECT `+trustRuleColumns+` FROM trust_rules WHERE id = ?`, f.RuleID))
	if errors.Is(err, sql.ErrNoRows) {
		return EnrollmentKey{}, fmt.Errorf("trust rule %s: %w", f.RuleID, ErrNotFound)
	}
	if err != nil {
		return EnrollmentKey{}, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM federated_tokens WHERE keep_until < ?`, toDB(e.Now)); err != nil {
		return EnrollmentKey{}, err
	}
	keep := f.TokenExpires
	if keep.IsZero() || keep.Before(e.Now) {
		keep = e.Now
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO federated_tokens (id, rule_id, node_id, used, keep_until) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`, f.TokenID, r.ID, e.NodeID, toDB(e.Now), toDB(keep.Add(TokenReplayMargin)))
	if err != nil {
		return EnrollmentKey{}, err
	}
	if c, err := res.RowsAffected(); err != nil || c != 1 {
		return EnrollmentKey{}, ErrTokenReplayed
	}
	if _, err := tx.ExecContext(ctx, `UPDATE trust_rules SET uses = uses + 1 WHERE id = ?`, r.ID); err != nil {
		return EnrollmentKey{}, err
	}
	return EnrollmentKey{
		Reusable:   true,
		Ephemeral:  r.Ephemeral,
		Tags:       r.Tags,
		Created:    r.Created,
		NodeExpiry: r.MaxLifetime,
	}, nil
}

// enrolledTx runs after Enroll inserted node n: a federated node records
// its trust rule.
func enrolledTx(ctx context.Context, tx *sql.Tx, n Node, e Enrollment) error {
	if e.Federated == nil {
		return nil
	}
	_, err := tx.ExecContext(ctx, `UPDATE nodes SET trust_rule = (SELECT name FROM trust_rules WHERE id = ?) WHERE id = ?`,
		e.Federated.RuleID, n.ID)
	return err
}

// nullIfEmpty stores "" as NULL (an optional reference).
func nullIfEmpty(s string) any {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	return s
}
