package coordinator

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"
)

// Config is the coordinator's whole configuration, parsed from flags and
// files at the edge (cmd/latch-coordinator). Start from DefaultConfig.
type Config struct {
	// Listen is the TCP address of the HTTPS API, host:port.
	Listen string
	// DataDir holds the database, the CA, the TLS certificate and the
	// bootstrap token. Created 0700 if missing.
	DataDir string
	// DB names the database: empty for <DataDir>/latch.db, a path, or a
	// sqlite:PATH / file:PATH URL. postgres:// is not supported yet.
	DB string
	// ServerNames are extra DNS names or IPs for the TLS certificate,
	// besides "localhost" and every local interface address.
	ServerNames []string
	// TrustDomain is the SPIFFE trust domain, fixed at first start.
	TrustDomain string
	// NodeCertLifetime is the validity of node certificates; agents renew
	// at half-life.
	NodeCertLifetime time.Duration
	// Keepalive is the longest a netmap stream stays silent.
	Keepalive time.Duration
	// EphemeralGrace is how long an ephemeral node may stay disconnected
	// before it is deleted.
	EphemeralGrace time.Duration
	// ShutdownTimeout bounds the graceful shutdown.
	ShutdownTimeout time.Duration
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		Listen:           ":8443",
		DataDir:          "/var/lib/latch-coordinator",
		TrustDomain:      "latch.internal",
		NodeCertLifetime: time.Hour,
		Keepalive:        15 * time.Second,
		EphemeralGrace:   2 * time.Minute,
		ShutdownTimeout:  10 * time.Second,
	}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen address %q: want host:port", c.Listen)
	}
	if c.DataDir == "" {
		return errors.New("data directory must be set")
	}
	if _, err := c.DBPath(); err != nil {
		return err
	}
	if err := checkTrustDomain(c.TrustDomain); err != nil {
		return err
	}
	switch {
	case c.NodeCertLifetime < 2*time.Minute || c.NodeCertLifetime > 365*24*time.Hour:
		return fmt.Errorf("node certificate lifetime %s: want between 2m and 8760h", c.NodeCertLifetime)
	case c.Keepalive < 100*time.Millisecond || c.Keepalive > 10*time.Minute:
		return fmt.Errorf("keepalive %s: want between 100ms and 10m", c.Keepalive)
	case c.EphemeralGrace < time.Second:
		return fmt.Errorf("ephemeral grace %s: want at least 1s", c.EphemeralGrace)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("shutdown timeout %s: want a positive duration", c.ShutdownTimeout)
	}
	return nil
}

// DBPath returns the SQLite file the configuration names.
func (c Config) DBPath() (string, error) {
	db := c.DB
	switch {
	case db == "":
		return filepath.Join(c.DataDir, "latch.db"), nil
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		return "", errors.New("database: PostgreSQL is not supported yet; omit --db to use SQLite")
	case strings.HasPrefix(db, "sqlite://"):
		db = strings.TrimPrefix(db, "sqlite://")
	case strings.HasPrefix(db, "sqlite:"):
		db = strings.TrimPrefix(db, "sqlite:")
	case strings.HasPrefix(db, "file:"):
		db = strings.TrimPrefix(db, "file:")
	case strings.Contains(db, "://"):
		return "", fmt.Errorf("database URL %q: unsupported scheme (want a path or sqlite:PATH)", db)
	}
	if db == "" || strings.ContainsAny(db, "?#") {
		return "", fmt.Errorf("database path %q: want a file path without ? or #", c.DB)
	}
	return db, nil
}

// checkTrustDomain accepts a lowercase DNS name, as SPIFFE requires.
func checkTrustDomain(td string) error {
	if td == "" || len(td) > 255 {
		return fmt.Errorf("trust domain %q: want a lowercase DNS name", td)
	}
	for _, l := range strings.Split(td, ".") {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("trust domain %q: want a lowercase DNS name", td)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("trust domain %q: want a lowercase DNS name", td)
			}
		}
	}
	return nil
}
