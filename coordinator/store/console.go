package store

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Console roles (issue 6). The console maps each to API scopes.
const (
	RoleOwner    = "owner"
	RoleAdmin    = "admin"
	RoleApprover = "approver"
	RoleAuditor  = "auditor"
)

// ConsoleAccount is a local web console account. Hash is the encoded
// argon2id hash of the password; the password itself is never stored.
type ConsoleAccount struct {
	Username string
	Hash     string
	Role     string
	Created  time.Time
	Disabled bool
}

// ConsoleSession is a signed-in console session, stored by the SHA-256 of
// its random ID: a stolen database does not hold usable session cookies.
type ConsoleSession struct {
	IDHash   []byte
	Username string
	Created  time.Time
	// Expires is the absolute end of the session.
	Expires time.Time
	// LastSeen is the last request's time (updated at most about once a
	// minute), for the idle timeout.
	LastSeen time.Time
}

// CreateFirstConsoleAccount implements Store.
func (s *SQLite) CreateFirstConsoleAccount(ctx context.Context, a ConsoleAccount) (bool, error) {
	created := false
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM console_accounts`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return errNoFirstAccount
		}
		created = true
		return insertAccountTx(ctx, tx, a)
	})
	if errors.Is(err, errNoFirstAccount) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("creating first console account: %w", err)
	}
	return created, nil
}

// errNoFirstAccount rolls back CreateFirstConsoleAccount (and so drops its
// audit record) when an account exists.
var errNoFirstAccount = errors.New("an account exists")

// CreateConsoleAccount implements Store.
func (s *SQLite) CreateConsoleAccount(ctx context.Context, a ConsoleAccount) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM console_accounts WHERE username = ?`, a.Username).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("account %q: %w", a.Username, ErrAlreadyExists)
		}
		return insertAccountTx(ctx, tx, a)
	})
	if err != nil {
		return fmt.Errorf("creating console account: %w", err)
	}
	return nil
}

func insertAccountTx(ctx context.Context, tx *sql.Tx, a ConsoleAccount) error {
	if a.Username == "" || a.Hash == "" || a.Role == "" {
		return errors.New("empty user name, hash or role")
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO console_accounts (username, hash, role, created, disabled) VALUES (?, ?, ?, ?, ?)`,
		a.Username, a.Hash, a.Role, toDB(a.Created), a.Disabled)
	return err
}

// ConsoleAccount implements Store.
func (s *SQLite) ConsoleAccount(ctx context.Context, username string) (ConsoleAccount, error) {
	a, err := scanAccount(s.r.QueryRowContext(ctx,
		`SELECT username, hash, role, created, disabled FROM console_accounts WHERE username = ?`, username))
	if errors.Is(err, sql.ErrNoRows) {
		return ConsoleAccount{}, fmt.Errorf("console account %q: %w", username, ErrNotFound)
	}
	if err != nil {
		return ConsoleAccount{}, fmt.Errorf("reading console account: %w", err)
	}
	return a, nil
}

// ConsoleAccounts implements Store.
func (s *SQLite) ConsoleAccounts(ctx context.Context) ([]ConsoleAccount, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT username, hash, role, created, disabled FROM console_accounts ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("listing console accounts: %w", err)
	}
	defer rows.Close()
	var out []ConsoleAccount
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, fmt.Errorf("listing console accounts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing console accounts: %w", err)
	}
	return out, nil
}

func scanAccount(row interface{ Scan(...any) error }) (ConsoleAccount, error) {
	var (
		a       ConsoleAccount
		created sql.NullInt64
	)
	if err := row.Scan(&a.Username, &a.Hash, &a.Role, &created, &a.Disabled); err != nil {
		return ConsoleAccount{}, err
	}
	a.Created = fromDB(created)
	return a, nil
}

// SetConsoleAccountDisabled implements Store. Disabling an account also
// ends its sessions, in the same transaction.
func (s *SQLite) SetConsoleAccountDisabled(ctx context.Context, username string, disabled bool) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE console_accounts SET disabled = ? WHERE username = ?`, disabled, username)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("console account %q: %w", username, ErrNotFound)
		}
		if disabled {
			_, err = tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE username = ?`, username)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("changing console account: %w", err)
	}
	return nil
}

// SetConsolePassword implements Store.
func (s *SQLite) SetConsolePassword(ctx context.Context, username, hash string, keep []byte) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if hash == "" {
			return errors.New("empty hash")
		}
		res, err := tx.ExecContext(ctx, `UPDATE console_accounts SET hash = ? WHERE username = ?`, hash, username)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("console account %q: %w", username, ErrNotFound)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE username = ? AND id_hash <> ?`, username, hex.EncodeToString(keep))
		return err
	})
	if err != nil {
		return fmt.Errorf("changing console password: %w", err)
	}
	return nil
}

// SetConsoleRole implements Store.
func (s *SQLite) SetConsoleRole(ctx context.Context, username, role string) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if role == "" {
			return errors.New("empty role")
		}
		res, err := tx.ExecContext(ctx, `UPDATE console_accounts SET role = ? WHERE username = ?`, role, username)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("console account %q: %w", username, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("changing console role: %w", err)
	}
	return nil
}

// CreateConsoleSession implements Store.
func (s *SQLite) CreateConsoleSession(ctx context.Context, cs ConsoleSession) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO console_sessions (id_hash, username, created, expires, last_seen) VALUES (?, ?, ?, ?, ?)`,
			hex.EncodeToString(cs.IDHash), cs.Username, toDB(cs.Created), toDB(cs.Expires), toDB(cs.LastSeen))
		return err
	})
	if err != nil {
		return fmt.Errorf("creating console session: %w", err)
	}
	return nil
}

// ConsoleSession implements Store.
func (s *SQLite) ConsoleSession(ctx context.Context, idHash []byte) (ConsoleSession, error) {
	var (
		cs                     ConsoleSession
		idh                    string
		created, expires, seen sql.NullInt64
	)
	err := s.r.QueryRowContext(ctx, `SELECT id_hash, username, created, expires, last_seen FROM console_sessions WHERE id_hash = ?`,
		hex.EncodeToString(idHash)).Scan(&idh, &cs.Username, &created, &expires, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return ConsoleSession{}, fmt.Errorf("console session: %w", ErrNotFound)
	}
	if err != nil {
		return ConsoleSession{}, fmt.Errorf("reading console session: %w", err)
	}
	cs.IDHash, _ = hex.DecodeString(idh)
	cs.Created, cs.Expires, cs.LastSeen = fromDB(created), fromDB(expires), fromDB(seen)
	return cs, nil
}

// TouchConsoleSession implements Store.
func (s *SQLite) TouchConsoleSession(ctx context.Context, idHash []byte, at time.Time) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE console_sessions SET last_seen = ? WHERE id_hash = ?`, toDB(at), hex.EncodeToString(idHash))
		return err
	})
	if err != nil {
		return fmt.Errorf("touching console session: %w", err)
	}
	return nil
}

// DeleteConsoleSession implements Store.
func (s *SQLite) DeleteConsoleSession(ctx context.Context, idHash []byte) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE id_hash = ?`, hex.EncodeToString(idHash))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("console session: %w", ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("deleting console session: %w", err)
	}
	return nil
}

// PruneConsoleSessions implements Store.
func (s *SQLite) PruneConsoleSessions(ctx context.Context, expiresBefore, seenBefore time.Time) (int64, error) {
	var n int64
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE expires <= ? OR last_seen <= ?`,
			expiresBefore.UnixMicro(), seenBefore.UnixMicro())
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("pruning console sessions: %w", err)
	}
	return n, nil
}
