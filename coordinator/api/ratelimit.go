package api

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/latchnet/latch/coordinator/ratelimit"
)

// RateLimits bounds how fast one source may try enrollment keys and API
// tokens. A zero Limit takes its default; a Limit with a negative Rate
// turns that limit off.
type RateLimits struct {
	// EnrollPerIP bounds POST wire.PathEnroll per source IP.
	EnrollPerIP ratelimit.Limit
	// EnrollPerKey bounds POST wire.PathEnroll per enrollment key ID.
	EnrollPerKey ratelimit.Limit
	// AuthFailuresPerIP bounds failed API token authentications per
	// source IP; once exhausted, every admin call from that IP gets 429
	// until a token is back.
	AuthFailuresPerIP ratelimit.Limit
	// MaxKeys caps the sources (and keys) tracked per limit.
	MaxKeys int
}

// DefaultRateLimits returns the production defaults.
func DefaultRateLimits() RateLimits {
	return RateLimits{
		EnrollPerIP:       ratelimit.Limit{Rate: 10, Burst: 20},
		EnrollPerKey:      ratelimit.Limit{Rate: 5, Burst: 10},
		AuthFailuresPerIP: ratelimit.Limit{Rate: 5, Burst: 10},
		MaxKeys:           ratelimit.DefaultMaxKeys,
	}
}

// limiters are the Server's rate limiters.
type limiters struct {
	enrollIP, enrollKey, authFail *ratelimit.Limiter
}

func newLimiters(rl RateLimits, now func() time.Time) limiters {
	def := DefaultRateLimits()
	pick := func(l, d ratelimit.Limit) ratelimit.Limit {
		if l == (ratelimit.Limit{}) {
			return d
		}
		return l
	}
	mk := func(l ratelimit.Limit) *ratelimit.Limiter {
		return ratelimit.New(ratelimit.Config{Limit: l, MaxKeys: rl.MaxKeys, Now: now})
	}
	return limiters{
		enrollIP:  mk(pick(rl.EnrollPerIP, def.EnrollPerIP)),
		enrollKey: mk(pick(rl.EnrollPerKey, def.EnrollPerKey)),
		authFail:  mk(pick(rl.AuthFailuresPerIP, def.AuthFailuresPerIP)),
	}
}

// sourceIP is the request's peer address without the port. The
// coordinator serves clients directly, so no forwarding header is trusted.
func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// tooMany answers 429 with Retry-After.
func tooMany(w http.ResponseWriter, what string, retry time.Duration) {
	secs := ratelimit.RetryAfter(retry)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many %s; retry in %d s", what, secs))
}

// limitEnrollIP wraps the enrollment route with the per-source limit,
// applied before the body is read.
func (s *Server) limitEnrollIP(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, retry := s.limits.enrollIP.Allow(sourceIP(r)); !ok {
			s.log.Info("enrollment rate limited", logRemote, r.RemoteAddr)
			tooMany(w, "enrollment attempts from this address", retry)
			return
		}
		h(w, r)
	}
}

// allowEnrollKey applies the per-key enrollment limit; on refusal it
// writes 429 and returns false.
func (s *Server) allowEnrollKey(w http.ResponseWriter, r *http.Request, keyID string) bool {
	if ok, retry := s.limits.enrollKey.Allow(keyID); !ok {
		s.log.Info("enrollment rate limited", logKeyID, keyID, logRemote, r.RemoteAddr)
		tooMany(w, "enrollment attempts with this key", retry)
		return false
	}
	return true
}
