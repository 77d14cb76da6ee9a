// Package ratelimit keeps token buckets per key (a source IP, an
// enrollment key ID) with bounded memory: at most a fixed number of keys
// are tracked, the least recently used is forgotten first, and a key idle
// long enough for its bucket to refill is dropped (forgetting it changes
// nothing, since a new bucket starts full).
package ratelimit

import (
	"container/list"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys is the number of keys tracked when Config.MaxKeys is 0.
const DefaultMaxKeys = 10000

// Limit is a token bucket: Rate events per second on average, up to Burst
// at once.
type Limit struct {
	Rate  float64
	Burst int
}

// Config configures a Limiter.
type Config struct {
	Limit Limit
	// MaxKeys caps the number of keys tracked (DefaultMaxKeys if 0).
	MaxKeys int
	// Now defaults to time.Now.
	Now func() time.Time
}

// Limiter is a set of token buckets keyed by string. It is safe for
// concurrent use.
type Limiter struct {
	limit   rate.Limit
	burst   int
	maxKeys int
	refill  time.Duration // time for an empty bucket to fill up
	now     func() time.Time

	mu   sync.Mutex
	keys map[string]*list.Element
	lru  list.List // of *entry, most recently used first
}

type entry struct {
	key  string
	lim  *rate.Limiter
	used time.Time
}

// New returns a Limiter. A Limit with a non-positive Rate or Burst allows
// everything.
func New(c Config) *Limiter {
	if c.MaxKeys <= 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	l := &Limiter{
		limit:   rate.Limit(c.Limit.Rate),
		burst:   c.Limit.Burst,
		maxKeys: c.MaxKeys,
		now:     c.Now,
		keys:    make(map[string]*list.Element),
	}
	if l.enabled() {
		l.refill = time.Duration(float64(l.burst) / c.Limit.Rate * float64(time.Second))
	}
	return l
}

func (l *Limiter) enabled() bool { return l.limit > 0 && l.burst > 0 }

// Allow takes one token from key's bucket. When the bucket is empty it
// takes nothing and returns false with the time until a token is back.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	if !l.enabled() {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e := l.get(key, now, true)
	r := e.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Check reports whether key's bucket holds a token, without taking one,
// and if not, the time until it does.
func (l *Limiter) Check(key string) (bool, time.Duration) {
	if !l.enabled() {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e := l.get(key, now, false)
	if e == nil {
		return true, 0
	}
	tokens := e.lim.TokensAt(now)
	if tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - tokens) / float64(l.limit) * float64(time.Second))
}

// Len returns the number of keys tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// get returns key's entry, creating it if create, and forgets idle and
// excess entries. l.mu is held.
func (l *Limiter) get(key string, now time.Time, create bool) *entry {
	l.sweep(now)
	if el, ok := l.keys[key]; ok {
		e := el.Value.(*entry)
		e.used = now
		l.lru.MoveToFront(el)
		return e
	}
	if !create {
		return nil
	}
	for len(l.keys) >= l.maxKeys {
		l.remove(l.lru.Back())
	}
	e := &entry{key: key, lim: rate.NewLimiter(l.limit, l.burst), used: now}
	l.keys[key] = l.lru.PushFront(e)
	return e
}

// sweep drops entries idle long enough for their bucket to be full again.
// The list is ordered by last use, so it stops at the first fresh one.
func (l *Limiter) sweep(now time.Time) {
	for el := l.lru.Back(); el != nil; el = l.lru.Back() {
		if now.Sub(el.Value.(*entry).used) <= l.refill {
			return
		}
		l.remove(el)
	}
}

func (l *Limiter) remove(el *list.Element) {
	delete(l.keys, el.Value.(*entry).key)
	l.lru.Remove(el)
}

// RetryAfter renders d as the value of a Retry-After header: whole
// seconds, rounded up, at least 1.
func RetryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
