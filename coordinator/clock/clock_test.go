package clock

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func fired(t Timer) bool {
	select {
	case <-t.C():
		return true
	default:
		return false
	}
}

func TestFakeTimersFireWhenTheClockReachesThem(t *testing.T) {
	f := NewFake(t0)
	past := f.At(t0.Add(-time.Second))
	a := f.At(t0.Add(time.Minute))
	b := f.At(t0.Add(time.Hour))
	stopped := f.At(t0.Add(time.Minute))
	if !fired(past) {
		t.Fatal("a timer in the past did not fire at once")
	}
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop reports wrongly")
	}
	f.Advance(time.Minute - time.Nanosecond)
	if fired(a) || fired(b) {
		t.Fatal("fired early")
	}
	f.Advance(time.Nanosecond)
	if !fired(a) || fired(b) || fired(stopped) || f.Waiters() != 1 {
		t.Fatalf("at 1m: a and only a fires (waiters %d)", f.Waiters())
	}
	if !f.Now().Equal(t0.Add(time.Minute)) {
		t.Fatalf("now %v", f.Now())
	}
	f.SetStep(time.Hour)
	f.Now() // moves the clock on by the step, firing b
	if !fired(b) || !f.Now().Equal(t0.Add(time.Minute+time.Hour)) {
		t.Fatal("the step did not move the clock")
	}
}

func TestRealTimerFires(t *testing.T) {
	tm := Real().At(time.Now())
	select {
	case <-tm.C():
	case <-time.After(5 * time.Second):
		t.Fatal("real timer at now did not fire")
	}
}
