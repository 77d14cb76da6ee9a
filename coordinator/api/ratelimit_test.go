package api

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/wire"
)

// off disables a limit.
var off = ratelimit.Limit{Rate: -1}

// noRateLimits keeps tests that enroll or fail quickly from one address
// clear of the limits; the tests below set their own.
var noRateLimits = RateLimits{EnrollPerIP: off, EnrollPerKey: off, AuthFailuresPerIP: off}

// want429 checks a rate-limit refusal: 429, Retry-After in whole seconds,
// a one-line JSON error.
func want429(t *testing.T, status int, hdr http.Header, b []byte) {
	t.Helper()
	if status != http.StatusTooManyRequests {
		t.Fatalf("status %d %s, want 429", status, b)
	}
	if s, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q, want whole seconds >= 1", hdr.Get("Retry-After"))
	}
	if msg := errorMessage(t, b); !strings.Contains(msg, "too many") {
		t.Errorf("error %q, want it to say too many", msg)
	}
}

// doHdr is e.do returning the response headers too.
func (e *env) doHdr(method, path string, hdr map[string]string, body []byte) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func TestEnrollRateLimits(t *testing.T) {
	tests := []struct {
		name   string
		limits RateLimits
		// sameKey: every attempt uses one key (else a new key each time).
		sameKey bool
		allowed int
	}{
		{"per source IP", RateLimits{EnrollPerIP: ratelimit.Limit{Rate: 1, Burst: 3}, EnrollPerKey: off, AuthFailuresPerIP: off}, false, 3},
		{"per enrollment key", RateLimits{EnrollPerIP: off, EnrollPerKey: ratelimit.Limit{Rate: 1, Burst: 2}, AuthFailuresPerIP: off}, true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.RateLimits = tt.limits })
			e.clock.SetStep(0)
			shared := e.createKey(wire.CreateKeyRequest{Reusable: true})
			keyFor := func() string {
				if tt.sameKey {
					return shared.Key
				}
				return e.createKey(wire.CreateKeyRequest{Reusable: true}).Key
			}
			for i := range tt.allowed {
				e.enroll(keyFor(), "n"+strconv.Itoa(i))
			}
			nodes := e.nodeCount()
			k := keyFor()
			status, hdr, b := e.doHdr(http.MethodPost, wire.PathEnroll, agentHdr(), mustJSON(newAgent().request(k, "over")))
			want429(t, status, hdr, b)
			if e.nodeCount() != nodes {
				t.Error("a rate-limited enrollment created a node")
			}
			if !tt.sameKey {
				// Another key does not help from the same address.
				status, hdr, b = e.doHdr(http.MethodPost, wire.PathEnroll, agentHdr(), mustJSON(newAgent().request(keyFor(), "over")))
				want429(t, status, hdr, b)
			} else {
				// Another key from the same address is not limited.
				e.enroll(e.createKey(wire.CreateKeyRequest{}).Key, "other-key")
			}
			// The limit lifts once the window passes.
			e.clock.Advance(time.Second)
			e.enroll(k, "after")
		})
	}
}

func TestAuthFailureRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RateLimits = RateLimits{EnrollPerIP: off, EnrollPerKey: off, AuthFailuresPerIP: ratelimit.Limit{Rate: 1, Burst: 3}}
	})
	e.clock.SetStep(0)
	bad := map[string]string{"Authorization": "Bearer " + NewToken().String()}
	for i := range 3 {
		if status, _, b := e.doHdr(http.MethodGet, wire.PathNodes, bad, nil); status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d %s, want 401", i, status, b)
		}
	}
	status, hdr, b := e.doHdr(http.MethodGet, wire.PathNodes, bad, nil)
	want429(t, status, hdr, b)
	// Even a good token is refused from that address until the window
	// passes: guessing must not learn anything meanwhile.
	status, hdr, b = e.doHdr(http.MethodGet, wire.PathNodes, e.adminHdr(), nil)
	want429(t, status, hdr, b)
	e.clock.Advance(time.Second)
	e.admin(http.MethodGet, wire.PathNodes, nil, http.StatusOK, nil)
	// Successes take nothing from the bucket.
	for range 10 {
		e.admin(http.MethodGet, wire.PathNodes, nil, http.StatusOK, nil)
	}
}
