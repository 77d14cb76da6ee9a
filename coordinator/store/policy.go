package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
)

// SavePolicy implements Store.
func (s *SQLite) SavePolicy(ctx context.Context, source, author string, ifVersion int, at time.Time) (Policy, error) {
	p := Policy{Source: source, Created: micro(at), Author: author}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		cur, err := currentPolicyVersion(ctx, tx)
		if err != nil {
			return err
		}
		if ifVersion > 0 && ifVersion != cur {
			return fmt.Errorf("%w: current version is %d, not %d", ErrVersionConflict, cur, ifVersion)
		}
		p.Version = cur + 1
		audit.Annotate(ctx, "version", p.Version)
		if _, err := tx.ExecContext(ctx, `INSERT INTO policies (version, source, created, author) VALUES (?, ?, ?, ?)`,
			p.Version, p.Source, toDB(p.Created), p.Author); err != nil {
			return err
		}
		return bumpVersion(ctx, tx)
	})
	if err != nil {
		return Policy{}, fmt.Errorf("saving policy: %w", err)
	}
	return p, nil
}

// currentPolicyVersion returns the newest version, 0 if none.
func currentPolicyVersion(ctx context.Context, q querier) (int, error) {
	var v int
	err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM policies`).Scan(&v)
	return v, err
}

const policyColumns = `version, source, created, author`

func scanPolicy(row interface{ Scan(...any) error }) (Policy, error) {
	var (
		p       Policy
		created sql.NullInt64
	)
	if err := row.Scan(&p.Version, &p.Source, &created, &p.Author); err != nil {
		return Policy{}, err
	}
	p.Created = fromDB(created)
	return p, nil
}

// currentPolicy reads the newest policy, or the zero Policy if none.
func currentPolicy(ctx context.Context, q querier) (Policy, error) {
	p, err := scanPolicy(q.QueryRowContext(ctx, `SELECT `+policyColumns+` FROM policies ORDER BY version DESC LIMIT 1`))
	if errors.Is(err, sql.ErrNoRows) {
		return Policy{}, nil
	}
	return p, err
}

// CurrentPolicy implements Store.
func (s *SQLite) CurrentPolicy(ctx context.Context) (Policy, error) {
	p, err := currentPolicy(ctx, s.r)
	if err == nil && p.Version == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return Policy{}, fmt.Errorf("reading current policy: %w", err)
	}
	return p, nil
}

// Policy implements Store.
func (s *SQLite) Policy(ctx context.Context, version int) (Policy, error) {
	p, err := scanPolicy(s.r.QueryRowContext(ctx, `SELECT `+policyColumns+` FROM policies WHERE version = ?`, version))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return Policy{}, fmt.Errorf("reading policy version %d: %w", version, err)
	}
	return p, nil
}

// Policies implements Store.
func (s *SQLite) Policies(ctx context.Context) ([]Policy, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT version, '', created, author FROM policies ORDER BY version DESC`)
	if err != nil {
		return nil, fmt.Errorf("listing policies: %w", err)
	}
	defer rows.Close()
	var ps []Policy
	for rows.Next() {
		p, err := scanPolicy(rows)
		if err != nil {
			return nil, fmt.Errorf("listing policies: %w", err)
		}
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing policies: %w", err)
	}
	return ps, nil
}
