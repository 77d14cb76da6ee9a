// Package clock is the coordinator's seam for time: the real clock, and a
// fake one tests advance by hand so that expiry is tested without
// waiting.
package clock

import (
	"sync"
	"time"
)

// Clock tells the time and wakes callers at a point in time.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// At returns a timer that fires once the clock reaches t (at once if
	// it already has).
	At(t time.Time) Timer
}

// Timer is a one-shot timer from a Clock.
type Timer interface {
	// C delivers one value when the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// Real returns the system clock.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) At(t time.Time) Timer { return realTimer{time.NewTimer(time.Until(t))} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// Fake is a Clock that moves only when told to. Safe for concurrent use.
type Fake struct {
	mu     sync.Mutex
	now    time.Time     // guarded by mu
	step   time.Duration // guarded by mu; added after every Now
	timers []*fakeTimer  // guarded by mu; pending, unordered
}

// NewFake returns a fake clock reading now.
func NewFake(now time.Time) *Fake { return &Fake{now: now} }

// SetStep makes every Now move the clock on by d afterwards (firing the
// timers that become due), so successive readings differ as on a real
// clock. Zero (the default) stands still.
func (f *Fake) SetStep(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.step = d
}

// Now implements Clock.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now
	if f.step > 0 {
		f.advanceLocked(f.step)
	}
	return now
}

// At implements Clock.
func (f *Fake) At(t time.Time) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := &fakeTimer{f: f, at: t, c: make(chan time.Time, 1)}
	if !t.After(f.now) {
		ft.c <- f.now
		return ft
	}
	f.timers = append(f.timers, ft)
	return ft
}

// Advance moves the clock forward by d and fires every timer due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advanceLocked(d)
}

func (f *Fake) advanceLocked(d time.Duration) {
	f.now = f.now.Add(d)
	kept := f.timers[:0]
	for _, t := range f.timers {
		if t.at.After(f.now) {
			kept = append(kept, t)
			continue
		}
		t.c <- f.now
	}
	clear(f.timers[len(kept):])
	f.timers = kept
}

// Waiters returns how many timers are pending.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

type fakeTimer struct {
	f  *Fake
	at time.Time
	c  chan time.Time // capacity 1; receives once
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	for i, x := range t.f.timers {
		if x == t {
			t.f.timers = append(t.f.timers[:i], t.f.timers[i+1:]...)
			return true
		}
	}
	return false
}
