package control

import (
	"math/rand/v2"
	"time"
)

// Backoff computes reconnect delays: exponential growth from Min to Max
// with full jitter, so a fleet that lost its coordinator at once does not
// return at once.
type Backoff struct {
	// Min is the cap of the first delay; zero means one second.
	Min time.Duration
	// Max is the largest cap; zero means one minute.
	Max time.Duration
	// Rand returns a uniform value in [0, n); nil means math/rand/v2.
	Rand func(n int64) int64
}

// Delay returns the wait before retry number attempt (0 for the first):
// uniform in [0, min(Max, Min*2^attempt)].
func (b Backoff) Delay(attempt int) time.Duration {
	return jitter(b.Cap(attempt), b.Rand)
}

// Cap returns the upper bound of Delay(attempt).
func (b Backoff) Cap(attempt int) time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = time.Second
	}
	if hi <= 0 {
		hi = time.Minute
	}
	if hi < lo {
		hi = lo
	}
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

func jitter(d time.Duration, rnd func(int64) int64) time.Duration {
	if d <= 0 {
		return 0
	}
	if rnd == nil {
		rnd = rand.Int64N
	}
	return time.Duration(rnd(int64(d) + 1))
}
