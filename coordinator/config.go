package coordinator

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/coordinator/store"
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
	// (its netmap stream gone and not back) before it is deleted; see
	// ephemeral.go for the whole removal bound.
	EphemeralGrace time.Duration
	// ShutdownTimeout bounds the graceful shutdown.
	ShutdownTimeout time.Duration
	// EnrollPerIP bounds enrollment attempts per source IP.
	EnrollPerIP RateLimit
	// EnrollPerKey bounds enrollment attempts per enrollment key ID.
	EnrollPerKey RateLimit
	// AuthFailuresPerIP bounds failed API token authentications per
	// source IP; once exhausted, admin calls from that IP get 429.
	AuthFailuresPerIP RateLimit
	// NodeKeyExpiry is the key lifetime of nodes whose enrollment key sets
	// none (identity, issue 4). Default 180 days.
	NodeKeyExpiry time.Duration
	// OIDCCAFile, when set, is a PEM file of CA certificates trusted for
	// OIDC issuers' HTTPS besides the system roots (workload identity
	// federation, issue 5).
	OIDCCAFile string
	// FlowRetention is how long flow log records are kept (flows, issue
	// 4; flowsweep.go). Default 24h.
	FlowRetention time.Duration
	// FlowMaxRecords bounds the flow log; beyond it the oldest records
	// go. Default 1,000,000.
	FlowMaxRecords int
	// Console configures the web console at /console (issue 6;
	// console.go). The zero value serves it with its defaults.
	Console ConsoleConfig
}

// RateLimit is a token bucket: Rate events per second on average, up to
// Burst at once. A Rate of 0 turns the limit off (Burst is then ignored).
type RateLimit struct {
	Rate  float64
	Burst int
}

// Off reports whether the limit is turned off.
func (l RateLimit) Off() bool { return l.Rate == 0 }

// MaxRate and MaxBurst bound a RateLimit; larger values are typos.
const (
	MaxRate  = 1e6
	MaxBurst = 1_000_000
)

// validate reports whether the limit is usable; name is its flag name
// with %s for "rate" or "burst".
func (l RateLimit) validate(name string) error {
	switch {
	case l.Rate < 0 || l.Rate > MaxRate || l.Rate != l.Rate:
		return fmt.Errorf("%s %g/s: want off (0) or a positive rate up to %g/s", fmt.Sprintf(name, "rate"), l.Rate, float64(MaxRate))
	case l.Off():
		return nil
	case l.Burst < 1 || l.Burst > MaxBurst:
		return fmt.Errorf("%s %d: want between 1 and %d", fmt.Sprintf(name, "burst"), l.Burst, MaxBurst)
	}
	return nil
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		Listen:           ":8443",
		DataDir:          "/var/lib/latch-coordinator",
		TrustDomain:      "latch.internal",
		NodeCertLifetime: time.Hour,
		Keepalive:        10 * time.Second,
		EphemeralGrace:   8 * time.Second,
		ShutdownTimeout:  10 * time.Second,
		// The same defaults as api.DefaultRateLimits.
		EnrollPerIP:       RateLimit{Rate: 10, Burst: 20},
		EnrollPerKey:      RateLimit{Rate: 5, Burst: 10},
		AuthFailuresPerIP: RateLimit{Rate: 5, Burst: 10},
		NodeKeyExpiry:     store.DefaultNodeKeyExpiry,
		FlowRetention:     DefaultFlowRetention,
		FlowMaxRecords:    DefaultFlowMaxRecords,
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
	if err := c.Console.validate(); err != nil { // console.go (issue 6)
		return err
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
	case c.NodeKeyExpiry < api.MinNodeKeyExpiry || c.NodeKeyExpiry > api.MaxNodeKeyExpiry:
		return fmt.Errorf("node key expiry %s: want between %s and %s", c.NodeKeyExpiry, api.MinNodeKeyExpiry, api.MaxNodeKeyExpiry)
	}
	if err := c.validateFlows(); err != nil {
		return err
	}
	for _, l := range []struct {
		name string
		l    RateLimit
	}{
		{"enroll-%s-per-ip", c.EnrollPerIP},
		{"enroll-%s-per-key", c.EnrollPerKey},
		{"auth-failure-%s-per-ip", c.AuthFailuresPerIP},
	} {
		if err := l.l.validate(l.name); err != nil {
			return err
		}
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

// apiLimit converts the limit for api.RateLimits, where a zero Limit means
// "default" and a negative Rate means "off".
func (l RateLimit) apiLimit() ratelimit.Limit {
	if l.Off() {
		return ratelimit.Limit{Rate: -1}
	}
	return ratelimit.Limit{Rate: l.Rate, Burst: l.Burst}
}
