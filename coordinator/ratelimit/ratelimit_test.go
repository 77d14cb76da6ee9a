package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *fakeClock               { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func TestAllowEngagesAndRecovers(t *testing.T) {
	tests := []struct {
		name  string
		limit Limit
		burst int // requests allowed at once
		wait  time.Duration
	}{
		{"10/s burst 20", Limit{Rate: 10, Burst: 20}, 20, 100 * time.Millisecond},
		{"5/s burst 10", Limit{Rate: 5, Burst: 10}, 10, 200 * time.Millisecond},
		{"1/s burst 1", Limit{Rate: 1, Burst: 1}, 1, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			l := New(Config{Limit: tt.limit, Now: c.now})
			for i := range tt.burst {
				if ok, _ := l.Allow("k"); !ok {
					t.Fatalf("request %d refused within the burst", i)
				}
			}
			ok, d := l.Allow("k")
			if ok {
				t.Fatal("request beyond the burst allowed")
			}
			if d <= 0 || d > tt.wait {
				t.Errorf("retry after %s, want in (0, %s]", d, tt.wait)
			}
			if ok, _ := l.Check("k"); ok {
				t.Error("Check says a token is there")
			}
			c.add(d)
			if ok, _ := l.Allow("k"); !ok {
				t.Error("refused after waiting the retry time")
			}
			c.add(time.Hour)
			for i := range tt.burst {
				if ok, _ := l.Allow("k"); !ok {
					t.Fatalf("request %d refused after the bucket refilled", i)
				}
			}
		})
	}
}

func TestKeysAreIndependent(t *testing.T) {
	c := newClock()
	l := New(Config{Limit: Limit{Rate: 1, Burst: 2}, Now: c.now})
	for range 2 {
		l.Allow("a")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("a not limited")
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Error("b limited by a's requests")
	}
}

func TestCheckTakesNothing(t *testing.T) {
	c := newClock()
	l := New(Config{Limit: Limit{Rate: 1, Burst: 1}, Now: c.now})
	for range 5 {
		if ok, _ := l.Check("k"); !ok {
			t.Fatal("Check refused an untouched key")
		}
	}
	if l.Len() != 0 {
		t.Errorf("Check created %d entries", l.Len())
	}
	l.Allow("k")
	ok, d := l.Check("k")
	if ok || d <= 0 || d > time.Second {
		t.Errorf("Check after emptying = %v, %s; want false, (0, 1s]", ok, d)
	}
}

func TestMemoryBounded(t *testing.T) {
	c := newClock()
	l := New(Config{Limit: Limit{Rate: 1, Burst: 1}, MaxKeys: 100, Now: c.now})
	for i := range 10000 {
		l.Allow(fmt.Sprint("ip", i))
	}
	if n := l.Len(); n != 100 {
		t.Errorf("tracking %d keys, want the cap 100", n)
	}
	// The most recent key is still limited; the oldest was forgotten.
	if ok, _ := l.Allow("ip9999"); ok {
		t.Error("most recent key forgotten")
	}
	// Idle keys go once their bucket would be full again.
	c.add(2 * time.Second)
	l.Allow("fresh")
	if n := l.Len(); n != 1 {
		t.Errorf("tracking %d keys after they went idle, want 1", n)
	}
}

func TestDisabled(t *testing.T) {
	l := New(Config{})
	for range 1000 {
		if ok, _ := l.Allow("k"); !ok {
			t.Fatal("disabled limiter refused")
		}
	}
	if l.Len() != 0 {
		t.Error("disabled limiter tracks keys")
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int
	}{{0, 1}, {time.Millisecond, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {5 * time.Second, 5}} {
		if got := RetryAfter(tt.d); got != tt.want {
			t.Errorf("RetryAfter(%s) = %d, want %d", tt.d, got, tt.want)
		}
	}
}
