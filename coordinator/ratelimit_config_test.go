package coordinator

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"log/slog"
	"net/http"
	"testing"

	"github.com/latchnet/latch/wire"
)

// enrollStatus tries one enrollment and returns the HTTP status.
func (r *running) enrollStatus(t *testing.T, key, host string) int {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, priv)
	var wg wire.NodePublic
	rand.Read(wg[:])
	return r.call(t, http.MethodPost, wire.PathEnroll, map[string]string{wire.HeaderProtocol: "1"},
		wire.EnrollRequest{AuthKey: key, Hostname: host, WireGuardKey: wg, CSR: csr}, nil)
}

// TestConfiguredRateLimitsReachTheAPI proves Config's rate limits are the
// ones the API enforces: a burst of 1 refuses the second attempt, and an
// off limit refuses none.
func TestConfiguredRateLimitsReachTheAPI(t *testing.T) {
	slow := RateLimit{Rate: 1.0 / 3600, Burst: 1} // no refill during the test
	tests := []struct {
		name      string
		set       func(*Config)
		attempt   func(t *testing.T, r *running, key string, i int) int
		ok, limit int // status of the first attempt; of the later ones (429 when limited)
		n         int // attempts
	}{
		{"enroll per IP", func(c *Config) { c.EnrollPerIP = slow },
			func(t *testing.T, r *running, key string, i int) int {
				return r.enrollStatus(t, key, "n"+string(rune('a'+i)))
			},
			http.StatusOK, http.StatusTooManyRequests, 3},
		{"enroll per key", func(c *Config) { c.EnrollPerKey = slow },
			func(t *testing.T, r *running, key string, i int) int {
				return r.enrollStatus(t, key, "n"+string(rune('a'+i)))
			},
			http.StatusOK, http.StatusTooManyRequests, 3},
		// The default per-key burst (10) would refuse the 11th.
		{"enroll off", func(c *Config) { c.EnrollPerIP = RateLimit{}; c.EnrollPerKey = RateLimit{} },
			func(t *testing.T, r *running, key string, i int) int {
				return r.enrollStatus(t, key, "n"+string(rune('a'+i)))
			},
			http.StatusOK, http.StatusOK, 12},
		{"auth failures per IP", func(c *Config) { c.AuthFailuresPerIP = slow },
			func(t *testing.T, r *running, key string, i int) int {
				bad := map[string]string{"Authorization": "Bearer latchtok_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
				return r.call(t, http.MethodGet, wire.PathKeys, bad, nil, nil)
			},
			http.StatusUnauthorized, http.StatusTooManyRequests, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.set(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			r := start(t, cfg, slog.New(slog.DiscardHandler))
			var key wire.CreateKeyResponse
			if s := r.call(t, http.MethodPost, wire.PathKeys, r.admin(), wire.CreateKeyRequest{Reusable: true}, &key); s != http.StatusCreated {
				t.Fatalf("create key: %d", s)
			}
			if s := tt.attempt(t, r, key.Key, 0); s != tt.ok {
				t.Fatalf("first attempt: %d, want %d", s, tt.ok)
			}
			for i := 1; i < tt.n; i++ {
				if s := tt.attempt(t, r, key.Key, i); s != tt.limit {
					t.Fatalf("attempt %d: %d, want %d", i+1, s, tt.limit)
				}
			}
		})
	}
}
