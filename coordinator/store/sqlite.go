package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Options tune a store. The zero value is the production default.
type Options struct {
	// AddressHold is how long a released overlay address stays unusable
	// once allocation wraps around the pool, so no peer that may still
	// hold a rule for it sees it on another identity. Default 7 days.
	AddressHold time.Duration
	// PoolSize limits the IPv4 pool to its first PoolSize addresses of
	// 100.64.0.0/10 (tests use a small pool to exercise wrap-around).
	// Zero means the whole /10.
	PoolSize uint32
	// SyncedVersion, if set, returns the newest netmap version that every
	// live netmap stream has been sent (netmap.Hub.Version). An address
	// released by this process is then not handed out again before every
	// live stream was sent the version that dropped its node (addrhold.go).
	SyncedVersion func() uint64
}

// DefaultAddressHold is the hold time of a released overlay address.
const DefaultAddressHold = 7 * 24 * time.Hour

// busyTimeout bounds how long a statement waits for another process's lock.
const busyTimeout = 10 * time.Second

// SQLite is the Store on an SQLite file.
//
// Writes go through one connection whose transactions begin IMMEDIATE
// (they take the write lock up front, so two writers never deadlock on a
// lock upgrade and a read-then-write transaction sees no concurrent
// change). Reads use a separate pool of read-only connections: in WAL mode
// they see a consistent snapshot and never wait for the writer.
type SQLite struct {
	w    *sql.DB // one connection; every write transaction
	r    *sql.DB // read-only connections
	opts Options
	// holds are released addresses waiting for live streams (addrhold.go).
	holds addrHolds
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating if needed) the database file at path, applies
// pending migrations and returns the store. The file is created 0600.
//
// Durability: journal_mode=WAL with synchronous=FULL. WAL alone makes a
// commit atomic across a process crash (kill -9); FULL also fsyncs the WAL
// at every commit, so an acknowledged enrollment survives a power loss too.
// Writes are rare (enrollments, endpoint changes), so the fsync is cheap.
func OpenSQLite(ctx context.Context, path string, opts Options) (*SQLite, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("opening store: invalid database path %q", path)
	}
	if opts.AddressHold == 0 {
		opts.AddressHold = DefaultAddressHold
	}
	if opts.PoolSize == 0 || opts.PoolSize > poolSize {
		opts.PoolSize = poolSize
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	f.Close()

	common := fmt.Sprintf("_busy_timeout=%d&_foreign_keys=1", busyTimeout.Milliseconds())
	w, err := sql.Open("sqlite", path+"?"+common+"&_txlock=immediate&_journal_mode=WAL&_synchronous=FULL")
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	s := &SQLite{w: w, opts: opts}
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", path+"?"+common+"&_query_only=1")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("opening store: %w", err)
	}
	r.SetMaxOpenConns(8)
	s.r = r
	return s, nil
}

// Close closes both connection pools.
func (s *SQLite) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// Check runs SQLite's integrity_check and foreign_key_check.
func (s *SQLite) Check(ctx context.Context) error {
	var res string
	if err := s.w.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		return fmt.Errorf("checking store integrity: %w", err)
	}
	if res != "ok" {
		return fmt.Errorf("checking store integrity: %s", res)
	}
	rows, err := s.w.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return fmt.Errorf("checking store foreign keys: %w", err)
	}
	defer rows.Close()
	if rows.Next() {
		return errors.New("checking store foreign keys: violations found")
	}
	return rows.Err()
}

// Init implements Store.
func (s *SQLite) Init(ctx context.Context, trustDomain string) (Meta, error) {
	var m Meta
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		m, err = readMeta(ctx, tx)
		if err == nil {
			if m.TrustDomain != trustDomain {
				return fmt.Errorf("trust domain %q differs from the network's %q (fixed at first start)", trustDomain, m.TrustDomain)
			}
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		ula, err := randomULA()
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO meta (id, trust_domain, ula_prefix, addr_cursor, netmap_version) VALUES (1, ?, ?, 0, 1)`,
			trustDomain, ula.String()); err != nil {
			return err
		}
		m = Meta{TrustDomain: trustDomain, ULA: ula, NetmapVersion: 1}
		return nil
	})
	if err != nil {
		return Meta{}, fmt.Errorf("initializing store: %w", err)
	}
	return m, nil
}

// Meta implements Store.
func (s *SQLite) Meta(ctx context.Context) (Meta, error) {
	m, err := readMeta(ctx, s.r)
	if err != nil {
		return Meta{}, fmt.Errorf("reading network metadata: %w", err)
	}
	return m, nil
}

// randomULA returns a random fd00::/8 /48 (RFC 4193 global ID).
func randomULA() (netip.Prefix, error) {
	var a [16]byte
	a[0] = 0xfd
	if _, err := rand.Read(a[1:6]); err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(netip.AddrFrom16(a), 48), nil
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func readMeta(ctx context.Context, q querier) (Meta, error) {
	var (
		m         Meta
		ula       string
		version   int64
		bootstrap sql.NullString
	)
	err := q.QueryRowContext(ctx,
		`SELECT trust_domain, ula_prefix, netmap_version, bootstrap_token_id FROM meta WHERE id = 1`).
		Scan(&m.TrustDomain, &ula, &version, &bootstrap)
	if errors.Is(err, sql.ErrNoRows) {
		return Meta{}, ErrNotFound
	}
	if err != nil {
		return Meta{}, err
	}
	if m.ULA, err = netip.ParsePrefix(ula); err != nil {
		return Meta{}, fmt.Errorf("stored ULA prefix: %w", err)
	}
	m.NetmapVersion = uint64(version)
	m.BootstrapDone = bootstrap.Valid
	return m, nil
}

// writeTx runs fn in one IMMEDIATE transaction and commits it if fn
// returns nil. The audit entry attached to ctx (audit.With), if any, is
// appended in the same transaction after fn succeeded.
func (s *SQLite) writeTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if e := audit.FromContext(ctx); e != nil && !e.Dropped() {
		if err := appendAuditTx(ctx, tx, e); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

// bumpVersion increases the netmap version within tx.
func bumpVersion(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `UPDATE meta SET netmap_version = netmap_version + 1 WHERE id = 1`)
	return err
}

// Times are stored as INTEGER microseconds since the Unix epoch (UTC), the
// resolution PostgreSQL's timestamp has. NULL or 0 is the zero time.

func toDB(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func fromDB(v sql.NullInt64) time.Time {
	if !v.Valid || v.Int64 == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}
