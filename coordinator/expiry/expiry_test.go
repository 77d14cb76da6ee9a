package expiry

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/clock"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// setup returns a store and a function that enrolls a node whose key
// expires after lifetime.
func setup(t *testing.T) (*store.SQLite, func(lifetime time.Duration) store.Node) {
	t.Helper()
	ctx := context.Background()
	s, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "latch.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Init(ctx, "test.internal"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateEnrollmentKey(ctx, store.EnrollmentKey{ID: "kkkkkkkkkkkk", Reusable: true, Created: t0, Expires: t0.Add(time.Hour)},
		store.HashSecret("k")); err != nil {
		t.Fatal(err)
	}
	return s, func(lifetime time.Duration) store.Node {
		t.Helper()
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		var wg wire.NodePublic
		rand.Read(wg[:])
		n, err := s.Enroll(ctx, store.Enrollment{NodeID: store.NewNodeID(), KeyID: "kkkkkkkkkkkk", SecretHash: store.HashSecret("k"),
			Hostname: "n", WireGuardKey: wg, CertKey: pub, Now: t0, DefaultNodeExpiry: lifetime})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
}

func expired(t *testing.T, s store.Store, id wire.NodeID) bool {
	t.Helper()
	n, err := s.Node(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return n.Expired
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recClock is a fake clock that records when its timers are set for.
type recClock struct {
	*clock.Fake
	mu  sync.Mutex
	ats []time.Time // guarded by mu
}

func (c *recClock) At(t time.Time) clock.Timer {
	c.mu.Lock()
	c.ats = append(c.ats, t)
	c.mu.Unlock()
	return c.Fake.At(t)
}

func (c *recClock) waitsFor(t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ats) > 0 && c.ats[len(c.ats)-1].Equal(t)
}

func TestNodesExpireAtTheirKeyExpiryOnTheClock(t *testing.T) {
	s, enroll := setup(t)
	clk := &recClock{Fake: clock.NewFake(t0)}
	notified := make(chan struct{}, 16)
	late := enroll(50 * time.Second) // both within maxWait
	sw := Start(Config{Store: s, Clock: clk, Notify: func() { notified <- struct{}{} }})
	defer sw.Close()
	waitFor(t, "the sweeper to wait", func() bool { return clk.Waiters() == 1 })

	// An earlier expiry arrives: the sweeper must wake for it, at its
	// instant, not for the later one or some later sweep.
	early := enroll(20 * time.Second)
	sw.Kick()
	waitFor(t, "the sweeper to wait for the early expiry", func() bool { return clk.waitsFor(early.KeyExpiry) && clk.Waiters() == 1 })
	clk.Advance(20*time.Second - time.Microsecond)
	if expired(t, s, early.ID) {
		t.Fatal("expired before its time")
	}
	clk.Advance(time.Microsecond)
	select {
	case <-notified:
	case <-time.After(5 * time.Second):
		t.Fatal("no netmap notification at the expiry")
	}
	if !expired(t, s, early.ID) || expired(t, s, late.ID) {
		t.Fatalf("after 20s: early %v, late %v", expired(t, s, early.ID), expired(t, s, late.ID))
	}
	clk.Advance(30 * time.Second)
	<-notified
	if !expired(t, s, late.ID) {
		t.Fatal("late node did not expire")
	}
}

func TestNodesPastTheirExpiryExpireAtStart(t *testing.T) {
	s, enroll := setup(t)
	old := enroll(time.Minute)
	clk := clock.NewFake(t0.Add(time.Hour))
	notified := make(chan struct{}, 1)
	sw := Start(Config{Store: s, Clock: clk, Notify: func() { notified <- struct{}{} }})
	defer sw.Close()
	<-notified
	if !expired(t, s, old.ID) {
		t.Fatal("a node past its expiry survived a start")
	}
}

// failingStore fails every call until healed.
type failingStore struct {
	Store
	mu    sync.Mutex
	fails int
}

func (f *failingStore) ExpireNodes(ctx context.Context, now time.Time) ([]store.Node, error) {
	f.mu.Lock()
	if f.fails > 0 {
		f.fails--
		f.mu.Unlock()
		return nil, errors.New("disk on fire")
	}
	f.mu.Unlock()
	return f.Store.ExpireNodes(ctx, now)
}

func TestStoreErrorsAreRetried(t *testing.T) {
	s, enroll := setup(t)
	n := enroll(time.Minute)
	clk := clock.NewFake(t0.Add(time.Hour))
	notified := make(chan struct{}, 1)
	sw := Start(Config{Store: &failingStore{Store: s, fails: 2}, Clock: clk, Notify: func() { notified <- struct{}{} }})
	defer sw.Close()
	for range 2 {
		waitFor(t, "the retry wait", func() bool { return clk.Waiters() == 1 })
		clk.Advance(retryWait)
	}
	<-notified
	if !expired(t, s, n.ID) {
		t.Fatal("not expired after the store healed")
	}
}
