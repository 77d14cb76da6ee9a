package store

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// TestReleasedAddressWaitsUntilEveryStreamDroppedItsNode churns ephemeral
// nodes through a pool of 7 addresses with no time hold, while the
// "streams" (SyncedVersion) lag behind by a random number of versions. A
// naive reference model holds every address whose deletion version is
// past what the streams were sent; no enrollment may get one of those.
func TestReleasedAddressWaitsUntilEveryStreamDroppedItsNode(t *testing.T) {
	ctx := context.Background()
	var synced atomic.Uint64
	s, _ := openTest(t, Options{PoolSize: 8, AddressHold: time.Microsecond, SyncedVersion: synced.Load})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true, Ephemeral: true, Expires: t0.Add(1000 * time.Hour)})
	rng := rand.New(rand.NewPCG(1, 2))

	live := map[netip.Addr]wire.NodeID{} // address -> node holding it
	heldAt := map[netip.Addr]uint64{}    // reference: address -> version that released it
	now := t0.Add(time.Minute)
	handedOut, refusals := 0, 0
	for step := range 2000 {
		now = now.Add(time.Second) // far past the 1µs time hold
		m, err := s.Meta(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch op := rng.IntN(3); {
		case op == 0 && len(live) > 0: // a node leaves
			for a, nid := range live {
				if _, err := s.DeleteNode(ctx, nid, now); err != nil {
					t.Fatal(err)
				}
				delete(live, a)
				heldAt[a] = m.NetmapVersion + 1
				break
			}
		case op == 1: // the streams catch up by some versions
			synced.Store(min(m.NetmapVersion, synced.Load()+uint64(rng.IntN(4))))
		default: // a node enrolls
			e := enrollment(id, secret, "runner")
			e.Now = now
			n, err := s.Enroll(ctx, e)
			if errors.Is(err, ErrAddressPoolExhausted) {
				refusals++
				// The reference model agrees that nothing is free.
				free := 0
				for i := uint32(1); i < 8; i++ {
					a := ipv4At(i)
					if _, used := live[a]; !used && heldAt[a] <= synced.Load() {
						free++
					}
				}
				if free > 0 {
					t.Fatalf("step %d: pool reported exhausted with %d addresses free", step, free)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := heldAt[n.IPv4]; ok && v > synced.Load() {
				t.Fatalf("step %d: %v handed out while streams were sent only version %d; its node was removed at %d",
					step, n.IPv4, synced.Load(), v)
			}
			if other, ok := live[n.IPv4]; ok {
				t.Fatalf("step %d: %v handed out twice (also %s)", step, n.IPv4, other)
			}
			delete(heldAt, n.IPv4)
			live[n.IPv4] = n.ID
			handedOut++
		}
	}
	if refusals == 0 || handedOut < 200 {
		t.Fatalf("the churn did not exercise the hold: %d enrollments, %d refusals", handedOut, refusals)
	}
	// Once the streams caught up, nothing waits any more.
	m, _ := s.Meta(ctx)
	synced.Store(m.NetmapVersion)
	if n := s.AddressesAwaitingStreams(); n != 0 {
		t.Fatalf("%d addresses still wait after the streams caught up", n)
	}
}

// TestRevokedNodeAddressWaitsForStreams covers the other deletion path.
func TestRevokedNodeAddressWaitsForStreams(t *testing.T) {
	ctx := context.Background()
	var synced atomic.Uint64
	s, _ := openTest(t, Options{PoolSize: 2, AddressHold: time.Microsecond, SyncedVersion: synced.Load})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true, Expires: t0.Add(1000 * time.Hour)})
	first, err := s.Enroll(ctx, enrollment(id, secret, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeNode(ctx, first.ID, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	e := enrollment(id, secret, "b")
	e.Now = t0.Add(time.Hour)
	if _, err := s.Enroll(ctx, e); !errors.Is(err, ErrAddressPoolExhausted) {
		t.Fatalf("enroll before the streams dropped the revoked node: %v, want ErrAddressPoolExhausted", err)
	}
	m, _ := s.Meta(ctx)
	synced.Store(m.NetmapVersion)
	e = enrollment(id, secret, "b")
	e.Now = t0.Add(time.Hour)
	n, err := s.Enroll(ctx, e)
	if err != nil || n.IPv4 != first.IPv4 {
		t.Fatalf("after the streams caught up: %v %v, want %v", n.IPv4, err, first.IPv4)
	}
}
