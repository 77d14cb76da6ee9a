package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/latchnet/latch/wire"
)

// CreateEnrollmentKey implements Store.
func (s *SQLite) CreateEnrollmentKey(ctx context.Context, k EnrollmentKey, secretHash []byte) error {
	tags, err := json.Marshal(nonNilTags(k.Tags))
	if err != nil {
		return fmt.Errorf("creating enrollment key: %w", err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO enrollment_keys
		(id, secret_hash, description, reusable, ephemeral, tags, created, expires, revoked, uses)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0)`,
		k.ID, secretHash, k.Description, k.Reusable, k.Ephemeral, string(tags), toDB(k.Created), toDB(k.Expires))
	if err != nil {
		return fmt.Errorf("creating enrollment key: %w", err)
	}
	return nil
}

const keyColumns = `id, description, reusable, ephemeral, tags, created, expires, revoked, uses`

func scanKey(row interface{ Scan(...any) error }) (EnrollmentKey, error) {
	var (
		k                         EnrollmentKey
		tags                      string
		created, expires, revoked sql.NullInt64
	)
	if err := row.Scan(&k.ID, &k.Description, &k.Reusable, &k.Ephemeral, &tags, &created, &expires, &revoked, &k.Uses); err != nil {
		return EnrollmentKey{}, err
	}
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
	if err := insertToken(ctx, s.w, t, secretHash); err != nil {
		return fmt.Errorf("creating API token: %w", err)
	}
	return nil
}

func insertToken(ctx context.Context, q querier, t APIToken, secretHash []byte) error {
	scopes, err := json.Marshal(t.Scopes)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, `INSERT INTO api_tokens (id, secret_hash, scopes, description, created, expires, revoked)
		VALUES (?, ?, ?, ?, ?, ?, NULL)`,
		t.ID, secretHash, string(scopes), t.Description, toDB(t.Created), toDB(t.Expires))
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

// APIToken implements Store.
func (s *SQLite) APIToken(ctx context.Context, id string) (APIToken, []byte, error) {
	var (
		t                         APIToken
		hash                      []byte
		scopes                    string
		created, expires, revoked sql.NullInt64
	)
	err := s.r.QueryRowContext(ctx, `SELECT id, secret_hash, scopes, description, created, expires, revoked
		FROM api_tokens WHERE id = ?`, id).Scan(&t.ID, &hash, &scopes, &t.Description, &created, &expires, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return APIToken{}, nil, fmt.Errorf("reading API token: %w", ErrNotFound)
	}
	if err != nil {
		return APIToken{}, nil, fmt.Errorf("reading API token: %w", err)
	}
	if err := json.Unmarshal([]byte(scopes), &t.Scopes); err != nil {
		return APIToken{}, nil, fmt.Errorf("reading API token scopes: %w", err)
	}
	t.Created, t.Expires, t.Revoked = fromDB(created), fromDB(expires), fromDB(revoked)
	return t, hash, nil
}

func nonNilTags(t []wire.Tag) []wire.Tag {
	if t == nil {
		return []wire.Tag{}
	}
	return t
}
