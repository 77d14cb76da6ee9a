package grants

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/clock"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// setup returns a store with one node and a function that grants it
// access until a given time.
func setup(t *testing.T) (*store.SQLite, func(id string, expires time.Time)) {
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
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	var wg wire.NodePublic
	rand.Read(wg[:])
	n, err := s.Enroll(ctx, store.Enrollment{NodeID: store.NewNodeID(), KeyID: "kkkkkkkkkkkk", SecretHash: store.HashSecret("k"),
		Hostname: "ci", WireGuardKey: wg, CertKey: pub, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	return s, func(id string, expires time.Time) {
		t.Helper()
		if err := s.CreateAccessRequest(ctx, store.AccessRequest{ID: id, Src: n.ID, SrcName: n.Name, To: "svc:db",
			Duration: expires.Sub(t0), Reason: "test", State: wire.AccessApproved, Created: t0, Approver: "policy",
			Decided: t0, Expires: expires, Ports: []store.PortSpec{{Proto: wire.ProtoTCP, First: 5432, Last: 5432}}}); err != nil {
			t.Fatal(err)
		}
	}
}

func state(t *testing.T, s store.Store, id string) string {
	t.Helper()
	r, err := s.AccessRequest(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r.State
}

// waitFor polls cond until it holds.
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

func TestGrantsExpireAtTheirExpiryOnTheClock(t *testing.T) {
	s, grant := setup(t)
	clk := clock.NewFake(t0)
	notified := make(chan struct{}, 16)
	grant("late", t0.Add(30*time.Minute))
	e := Start(Config{Store: s, Clock: clk, Notify: func() { notified <- struct{}{} }})
	defer e.Close()
	waitFor(t, "the expirer to wait", func() bool { return clk.Waiters() == 1 })

	// An earlier grant arrives: the expirer must wake for it, not the later one.
	grant("early", t0.Add(10*time.Minute))
	e.Kick()
	clk.Advance(10*time.Minute - time.Second)
	if state(t, s, "early") != wire.AccessApproved {
		t.Fatal("expired before its time")
	}
	clk.Advance(time.Second)
	select {
	case <-notified:
	case <-time.After(5 * time.Second):
		t.Fatal("no netmap notification at the expiry")
	}
	if state(t, s, "early") != wire.AccessExpired || state(t, s, "late") != wire.AccessApproved {
		t.Fatalf("after 10m: early %s, late %s", state(t, s, "early"), state(t, s, "late"))
	}
	clk.Advance(20 * time.Minute)
	<-notified
	if state(t, s, "late") != wire.AccessExpired {
		t.Fatal("late grant did not expire")
	}
}

func TestGrantsPastTheirExpiryExpireAtStart(t *testing.T) {
	s, grant := setup(t)
	grant("old", t0.Add(time.Minute))
	clk := clock.NewFake(t0.Add(time.Hour))
	notified := make(chan struct{}, 1)
	e := Start(Config{Store: s, Clock: clk, Notify: func() { notified <- struct{}{} }})
	defer e.Close()
	<-notified
	if state(t, s, "old") != wire.AccessExpired {
		t.Fatal("a grant past its expiry survived a start")
	}
}
