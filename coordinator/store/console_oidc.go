package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ConsoleOIDCBinding lets the user Subject of the OIDC provider Issuer
// sign in to the console as the account Username. Issuer and Subject
// are compared exactly; no other claim (email, name) selects an account.
type ConsoleOIDCBinding struct {
	Issuer, Subject string
	Username        string
	Created         time.Time
}

// BindConsoleOIDC implements Store.
func (s *SQLite) BindConsoleOIDC(ctx context.Context, b ConsoleOIDCBinding) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if b.Issuer == "" || b.Subject == "" || b.Username == "" {
			return errors.New("empty issuer, subject or user name")
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM console_accounts WHERE username = ?`, b.Username).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("console account %q: %w", b.Username, ErrNotFound)
		}
		var other string
		err := tx.QueryRowContext(ctx, `SELECT username FROM console_oidc_bindings WHERE issuer = ? AND subject = ?`, b.Issuer, b.Subject).Scan(&other)
		switch {
		case err == nil && other != b.Username:
			return fmt.Errorf("this identity is bound to another account: %w", ErrAlreadyExists)
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM console_oidc_bindings WHERE username = ?`, b.Username); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO console_oidc_bindings (issuer, subject, username, created) VALUES (?, ?, ?, ?)`,
			b.Issuer, b.Subject, b.Username, toDB(b.Created))
		return err
	})
	if err != nil {
		return fmt.Errorf("binding console account to OIDC: %w", err)
	}
	return nil
}

// UnbindConsoleOIDC implements Store.
func (s *SQLite) UnbindConsoleOIDC(ctx context.Context, username string) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM console_oidc_bindings WHERE username = ?`, username)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("console account %q has no OIDC binding: %w", username, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("unbinding console account from OIDC: %w", err)
	}
	return nil
}

// ConsoleAccountByOIDC implements Store.
func (s *SQLite) ConsoleAccountByOIDC(ctx context.Context, issuer, subject string) (ConsoleAccount, error) {
	a, err := scanAccount(s.r.QueryRowContext(ctx, `SELECT a.username, a.hash, a.role, a.created, a.disabled
		FROM console_oidc_bindings b JOIN console_accounts a ON a.username = b.username
		WHERE b.issuer = ? AND b.subject = ?`, issuer, subject))
	if errors.Is(err, sql.ErrNoRows) {
		return ConsoleAccount{}, fmt.Errorf("no console account bound to this OIDC identity: %w", ErrNotFound)
	}
	if err != nil {
		return ConsoleAccount{}, fmt.Errorf("reading console account by OIDC identity: %w", err)
	}
	return a, nil
}

// ConsoleOIDCBindings implements Store.
func (s *SQLite) ConsoleOIDCBindings(ctx context.Context) ([]ConsoleOIDCBinding, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT issuer, subject, username, created FROM console_oidc_bindings ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("listing console OIDC bindings: %w", err)
	}
	defer rows.Close()
	var out []ConsoleOIDCBinding
	for rows.Next() {
		var b ConsoleOIDCBinding
		var created sql.NullInt64
		if err := rows.Scan(&b.Issuer, &b.Subject, &b.Username, &created); err != nil {
			return nil, fmt.Errorf("listing console OIDC bindings: %w", err)
		}
		b.Created = fromDB(created)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing console OIDC bindings: %w", err)
	}
	return out, nil
}
