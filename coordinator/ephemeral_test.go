package coordinator

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

type fakeReapStore struct {
	nodes   []store.Node
	deleted []wire.NodeID
	audits  []audit.Entry
}

func (s *fakeReapStore) Nodes(context.Context) ([]store.Node, error) { return s.nodes, nil }

func (s *fakeReapStore) DeleteNode(ctx context.Context, id wire.NodeID, _ time.Time) (store.Node, error) {
	s.deleted = append(s.deleted, id)
	if e := audit.FromContext(ctx); e != nil {
		s.audits = append(s.audits, *e)
	}
	return store.Node{ID: id}, nil
}

type fakeReapHub struct {
	online            map[wire.NodeID]bool
	notified, dropped int
}

func (h *fakeReapHub) Online(id wire.NodeID) bool    { return h.online[id] }
func (h *fakeReapHub) Disconnect(wire.NodeID, error) { h.dropped++ }
func (h *fakeReapHub) Notify()                       { h.notified++ }

func TestReaperDeletesOnlyEphemeralNodesGoneLongerThanTheGrace(t *testing.T) {
	started := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	now := started.Add(10 * time.Minute)
	const grace = 15 * time.Second
	tests := []struct {
		name       string
		node       store.Node
		online     bool
		now        time.Time
		wantReaped bool
	}{
		{"ephemeral, gone past the grace", store.Node{Ephemeral: true, LastSeen: now.Add(-grace - time.Millisecond)}, false, now, true},
		{"ephemeral, gone exactly the grace", store.Node{Ephemeral: true, LastSeen: now.Add(-grace)}, false, now, true},
		{"ephemeral, gone within the grace", store.Node{Ephemeral: true, LastSeen: now.Add(-grace + time.Second)}, false, now, false},
		{"ephemeral, online (stream up) long after last seen", store.Node{Ephemeral: true, LastSeen: now.Add(-time.Hour)}, true, now, false},
		{"permanent, gone for long", store.Node{LastSeen: now.Add(-time.Hour)}, false, now, false},
		{"ephemeral, seen before the restart, within the restart grace", store.Node{Ephemeral: true, LastSeen: started.Add(-time.Hour)}, false, started.Add(restartGrace - time.Second), false},
		{"ephemeral, seen before the restart, past the restart grace", store.Node{Ephemeral: true, LastSeen: started.Add(-time.Hour)}, false, started.Add(restartGrace), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.node.ID, tt.node.Name = "n1", "runner"
			st := &fakeReapStore{nodes: []store.Node{tt.node}}
			hub := &fakeReapHub{online: map[wire.NodeID]bool{"n1": tt.online}}
			r := &reaper{store: st, hub: hub, grace: grace, started: started, now: func() time.Time { return tt.now }, log: slog.New(slog.DiscardHandler)}
			got := r.sweep(context.Background())
			if (got == 1) != tt.wantReaped || len(st.deleted) != got {
				t.Fatalf("reaped %d (deleted %v), want reaped=%v", got, st.deleted, tt.wantReaped)
			}
			if !tt.wantReaped {
				if hub.notified != 0 {
					t.Fatal("hub notified without a change")
				}
				return
			}
			if hub.notified != 1 || hub.dropped != 1 {
				t.Fatalf("hub: notified %d, disconnected %d; want 1, 1", hub.notified, hub.dropped)
			}
			if len(st.audits) != 1 || st.audits[0].Action != audit.NodeDelete || st.audits[0].Actor != audit.ActorSystem ||
				st.audits[0].Target != audit.NodeActor("n1") {
				t.Fatalf("audit: %+v", st.audits)
			}
		})
	}
}

func TestReaperNotifiesOnceForManyNodes(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	st := &fakeReapStore{}
	for _, id := range []wire.NodeID{"a", "b", "c"} {
		st.nodes = append(st.nodes, store.Node{ID: id, Ephemeral: true, LastSeen: now.Add(-time.Minute)})
	}
	hub := &fakeReapHub{}
	r := &reaper{store: st, hub: hub, grace: time.Second, started: now.Add(-time.Hour), now: func() time.Time { return now }, log: slog.New(slog.DiscardHandler)}
	if n := r.sweep(context.Background()); n != 3 || hub.notified != 1 || !slices.Equal(st.deleted, []wire.NodeID{"a", "b", "c"}) {
		t.Fatalf("sweep: %d deleted %v, notified %d", n, st.deleted, hub.notified)
	}
}

func TestReapIntervalBoundsTheRemovalDelay(t *testing.T) {
	for grace, want := range map[time.Duration]time.Duration{
		time.Second:      250 * time.Millisecond,
		15 * time.Second: 1500 * time.Millisecond,
		2 * time.Minute:  2 * time.Second,
	} {
		if got := reapInterval(grace); got != want {
			t.Errorf("reapInterval(%v) = %v, want %v", grace, got, want)
		}
	}
	if g := DefaultConfig().EphemeralGrace; g+reapInterval(g) > 30*time.Second {
		t.Errorf("default grace %v plus sweep interval exceeds 30s", g)
	}
}

// TestDeletedNodesAddressWaitsForTheHub checks the wiring of the address
// hold: the coordinator's store asks its hub which netmap version every
// stream was sent, so with the hub stopped (nothing fanned out) a deleted
// node's address stays held.
func TestDeletedNodesAddressWaitsForTheHub(t *testing.T) {
	ctx := context.Background()
	c, err := New(ctx, testConfig(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Now()
	if err := c.store.CreateEnrollmentKey(ctx, store.EnrollmentKey{ID: "k1", Reusable: true, Ephemeral: true, Created: now, Expires: now.Add(time.Hour)},
		store.HashSecret("s")); err != nil {
		t.Fatal(err)
	}
	_, certKey, _ := ed25519.GenerateKey(rand.Reader)
	var wg wire.NodePublic
	rand.Read(wg[:])
	n, err := c.store.Enroll(ctx, store.Enrollment{NodeID: store.NewNodeID(), KeyID: "k1", SecretHash: store.HashSecret("s"),
		Hostname: "runner", WireGuardKey: wg, CertKey: certKey.Public().(ed25519.PublicKey), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	c.hub.Close() // nothing is fanned out from now on
	if _, err := c.store.DeleteNode(ctx, n.ID, now); err != nil {
		t.Fatal(err)
	}
	if got := c.store.AddressesAwaitingStreams(); got != 1 {
		t.Fatalf("%d addresses wait for the streams, want the deleted node's", got)
	}
}
