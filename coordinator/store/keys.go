package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/wire"
)

// CreateEnrollmentKey implements Store.
func (s *SQLite) CreateEnrollmentKey(ctx context.Context, k EnrollmentKey, secretHash []byte) error {
	tags, err := json.Marshal(nonNilTags(k.Tags))
	if err != nil {
		return fmt.Errorf("creating enrollment key: %w", err)
	}
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO enrollment_keys
		(id, secret_hash, description, reusable, ephemeral, tags, created, expires, revoked, uses, created_by_user,
		 node_expiry, no_node_expiry, max_uses)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, ?, ?, ?, ?)`,
			k.ID, secretHash, k.Description, k.Reusable, k.Ephemeral, string(tags), toDB(k.Created), toDB(k.Expires), k.CreatedByUser,
			durationToDB(k.NodeExpiry), k.NoNodeExpiry, k.MaxUses)
		return err
	})
	if err != nil {
		return fmt.Errorf("creating enrollment key: %w", err)
	}
	return nil
}

const keyColumns = `id, description, reusable, ephemeral, tags, created, expires, revoked, uses, created_by_user, node_expiry, no_node_expiry, max_uses`

func scanKey(row interface{ Scan(...any) error }) (EnrollmentKey, error) {
	var (
		k                         EnrollmentKey
		tags                      string
		created, expires, revoked sql.NullInt64
		nodeExpiry                sql.NullInt64
	)
	if err := row.Scan(&k.ID, &k.Description, &k.Reusable, &k.Ephemeral, &tags, &created, &expires, &revoked, &k.Uses, &k.CreatedByUser,
		&nodeExpiry, &k.NoNodeExpiry, &k.MaxUses); err != nil {
		return EnrollmentKey{}, err
	}
	k.NodeExpiry = durationFromDB(nodeExpiry)
	if err := json.Unmarshal([]byte(tags), &k.Tags); err != nil {
		return EnrollmentKey{}, fmt.Errorf("key %s tags: %w", k.ID, err)
	}
	k.Created, k.Expires, k.Revoked = fromDB(created), fromDB(expires), fromDB(revoked)
	return k, nil
}

// EnrollmentKeys implements Store.
func (s *SQLite) EnrollmentKeys(ctx context.Context) ([]EnrollmentKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+keyColumns+` FROM enrollment_keys ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("listing enrollment keys: %w", err)
	}
	defer rows.Close()
	var ks []EnrollmentKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("listing enrollment keys: %w", err)
		}
		ks = append(ks, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing enrollment keys: %w", err)
	}
	return ks, nil
}

// RevokeEnrollmentKey implements Store.
func (s *SQLite) RevokeEnrollmentKey(ctx context.Context, id string, at time.Time) (EnrollmentKey, error) {
	var k EnrollmentKey
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE enrollment_keys SET revoked = ? WHERE id = ? AND revoked IS NULL`, toDB(at), id); err != nil {
			return err
		}
		var err error
		k, err = scanKey(tx.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM enrollment_keys WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return EnrollmentKey{}, fmt.Errorf("revoking enrollment key %s: %w", id, err)
	}
	return k, nil
}

// CreateAPIToken implements Store.
func (s *SQLite) CreateAPIToken(ctx context.Context, t APIToken, secretHash []byte) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error { return insertToken(ctx, tx, t, secretHash) })
	if err != nil {
		return fmt.Errorf("creating API token: %w", err)
	}
	return nil
}

func insertToken(ctx context.Context, q querier, t APIToken, secretHash []byte) error {
	scopes, err := json.Marshal(t.Scopes)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, `INSERT INTO api_tokens (id, secret_hash, scopes, description, created, expires, revoked, user_name)
		VALUES (?, ?, ?, ?, ?, ?, NULL, ?)`,
		t.ID, secretHash, string(scopes), t.Description, toDB(t.Created), toDB(t.Expires), t.User)
	return err
}

// CreateBootstrapToken implements Store.
func (s *SQLite) CreateBootstrapToken(ctx context.Context, t APIToken, secretHash []byte) (bool, error) {
	created := false
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		m, err := readMeta(ctx, tx)
		if err != nil {
			return err
		}
		if m.BootstrapDone {
			audit.Drop(ctx)
			return nil
		}
		if err := insertToken(ctx, tx, t, secretHash); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE meta SET bootstrap_token_id = ? WHERE id = 1`, t.ID); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("creating bootstrap token: %w", err)
	}
	return created, nil
}

const tokenColumns = `id, user_name, scopes, description, created, expires, revoked`

func scanToken(row interface{ Scan(...any) error }) (APIToken, error) {
	var (
		t                         APIToken
		scopes                    string
		created, expires, revoked sql.NullInt64
	)
	if err := row.Scan(&t.ID, &t.User, &scopes, &t.Description, &created, &expires, &revoked); err != nil {
		return APIToken{}, err
	}
	if err := json.Unmarshal([]byte(scopes), &t.Scopes); err != nil {
		return APIToken{}, fmt.Errorf("token %s scopes: %w", t.ID, err)
	}
	t.Created, t.Expires, t.Revoked = fromDB(created), fromDB(expires), fromDB(revoked)
	return t, nil
}

// APIToken implements Store.
func (s *SQLite) APIToken(ctx context.Context, id string) (APIToken, []byte, error) {
	var hash []byte
	row := s.r.QueryRowContext(ctx, `SELECT secret_hash, `+tokenColumns+` FROM api_tokens WHERE id = ?`, id)
	t, err := scanToken(scanPrefix{row, &hash})
	if errors.Is(err, sql.ErrNoRows) {
		return APIToken{}, nil, fmt.Errorf("reading API token: %w", ErrNotFound)
	}
	if err != nil {
		return APIToken{}, nil, fmt.Errorf("reading API token: %w", err)
	}
	return t, hash, nil
}

// APITokens implements Store.
func (s *SQLite) APITokens(ctx context.Context) ([]APIToken, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("listing API tokens: %w", err)
	}
	defer rows.Close()
	var ts []APIToken
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("listing API tokens: %w", err)
		}
		ts = append(ts, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing API tokens: %w", err)
	}
	return ts, nil
}

// RevokeAPIToken implements Store.
func (s *SQLite) RevokeAPIToken(ctx context.Context, id string, at time.Time) (APIToken, error) {
	var t APIToken
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE api_tokens SET revoked = ? WHERE id = ? AND revoked IS NULL`, toDB(at), id); err != nil {
			return err
		}
		var err error
		t, err = scanToken(tx.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return APIToken{}, fmt.Errorf("revoking API token %s: %w", id, err)
	}
	return t, nil
}

func nonNilTags(t []wire.Tag) []wire.Tag {
	if t == nil {
		return []wire.Tag{}
	}
	return t
}
