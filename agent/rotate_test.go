package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchnet/latch/agent"
	"github.com/latchnet/latch/agent/internal/fakecoord"
	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/agent/state"
	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// engineKey returns the public half of the key the last engine config
// holds, or zero without a config.
func (h *harness) engineKey() wire.NodePublic {
	cfgs := h.engines.Last().Configs()
	if len(cfgs) == 0 {
		return wire.NodePublic{}
	}
	return wire.NodePublic(cfgs[len(cfgs)-1].PrivateKey.PublicKey())
}

func pendingKey(t *testing.T, dir string) (wgtypes.Key, bool) {
	t.Helper()
	d, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	k, ok, err := d.LoadPendingWGKey()
	if err != nil {
		t.Fatal(err)
	}
	return k, ok
}

// checkRotatedTo fails unless the coordinator, the state directory and the
// data plane all hold key, with no rotation left pending.
func checkRotatedTo(t *testing.T, h *harness, s *fakecoord.Server, id wire.NodeID, key wire.NodePublic) {
	t.Helper()
	if got := s.NodeKey(id); got != key {
		t.Errorf("coordinator key %v, want %v", got, key)
	}
	st := h.state()
	if st.Identity.WireGuardKey != key || wire.NodePublic(st.WireGuardKey.PublicKey()) != key {
		t.Errorf("stored key %v, want %v", st.Identity.WireGuardKey, key)
	}
	if got := h.engineKey(); got != key {
		t.Errorf("data plane key %v, want %v", got, key)
	}
	if _, ok := pendingKey(t, h.dir); ok {
		t.Error("a rotation is still pending")
	}
}

func TestRotatePersistsTellsTheCoordinatorAndReconfigures(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	s.AddPeer("db-1", "198.18.0.3:51820")
	h := start(t, t.TempDir(), nil)
	up := h.enroll(s)
	old := h.state().Identity.WireGuardKey

	resp, err := h.ag.Rotate(context.Background())
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if resp.OldKey != old || resp.NewKey == old || resp.NewKey.IsZero() {
		t.Fatalf("Rotate = %+v (old key %v)", resp, old)
	}
	checkRotatedTo(t, h, s, up.NodeID, resp.NewKey)
	// The peer is still configured: only the node's own key changed.
	cfgs := h.engine().Configs()
	if last := cfgs[len(cfgs)-1]; len(last.Peers) != 1 {
		t.Errorf("peers after rotation %+v", last.Peers)
	}
}

func TestRotateAfterALostAnswerOffersThePendingKeyAgain(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	h := start(t, t.TempDir(), nil)
	up := h.enroll(s)
	old := h.state().Identity.WireGuardKey

	s.SetRotateFault(fakecoord.RotateLoseAnswer)
	if _, err := h.ag.Rotate(context.Background()); err == nil {
		t.Fatal("Rotate succeeded without the coordinator's answer")
	}
	pending, ok := pendingKey(t, h.dir)
	if !ok {
		t.Fatal("no pending key after an unanswered rotation")
	}
	pub := wire.NodePublic(pending.PublicKey())
	if s.NodeKey(up.NodeID) != pub {
		t.Fatal("the fake did not record the pending key")
	}
	// Unconfirmed, the key is neither the node's nor the data plane's.
	if st := h.state(); st.Identity.WireGuardKey != old {
		t.Errorf("stored key changed before the coordinator confirmed it")
	}
	if h.engineKey() != old {
		t.Errorf("data plane uses an unconfirmed key")
	}

	s.SetRotateFault(fakecoord.RotateOK)
	resp, err := h.ag.Rotate(context.Background())
	if err != nil {
		t.Fatalf("Rotate again: %v", err)
	}
	if resp.NewKey != pub {
		t.Fatalf("second rotation used %v, want the pending %v", resp.NewKey, pub)
	}
	checkRotatedTo(t, h, s, up.NodeID, pub)
}

func TestRotateRefusedAsTakenDropsThePendingKey(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	h := start(t, t.TempDir(), nil)
	h.enroll(s)
	// A pending key that is another node's key is refused with 409.
	d, _ := state.Open(h.dir)
	taken, _ := wgtypes.GeneratePrivateKey()
	if err := d.SavePendingWGKey(taken); err != nil {
		t.Fatal(err)
	}
	s.AddPeerWithKey(t, "db-1", wire.NodePublic(taken.PublicKey()))
	_, err := h.ag.Rotate(context.Background())
	var le *localapi.Error
	if !errors.As(err, &le) || le.Status != 409 {
		t.Fatalf("Rotate with a taken key = %v, want a 409", err)
	}
	if _, ok := pendingKey(t, h.dir); ok {
		t.Fatal("the refused key is still pending")
	}
}

func TestRestartWithAPendingKeyConfirmsIt(t *testing.T) {
	tests := []struct {
		name string
		// recorded: the coordinator recorded the key before the crash.
		recorded bool
	}{
		{"coordinator never heard of it", false},
		{"coordinator recorded it", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
			dir := t.TempDir()
			h := start(t, dir, nil)
			up := h.enroll(s)
			var pending wgtypes.Key
			if tt.recorded {
				s.SetRotateFault(fakecoord.RotateLoseAnswer)
				if _, err := h.ag.Rotate(context.Background()); err == nil {
					t.Fatal("Rotate succeeded without an answer")
				}
				pending, _ = pendingKey(t, dir)
				s.SetRotateFault(fakecoord.RotateOK)
			} else {
				pending, _ = wgtypes.GeneratePrivateKey()
				d, _ := state.Open(dir)
				if err := d.SavePendingWGKey(pending); err != nil {
					t.Fatal(err)
				}
			}
			h.stop() // the crash

			h = start(t, dir, nil)
			pub := wire.NodePublic(pending.PublicKey())
			waitFor(t, "the pending key confirmed and applied", func() bool {
				_, ok := pendingKey(t, dir)
				return !ok && h.engines.Last() != nil && h.engineKey() == pub
			})
			checkRotatedTo(t, h, s, up.NodeID, pub)
		})
	}
}

func TestRestartAfterACrashMidCommitFinishesIt(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	dir := t.TempDir()
	h := start(t, dir, nil)
	up := h.enroll(s)
	s.SetRotateFault(fakecoord.RotateLoseAnswer)
	h.ag.Rotate(context.Background())
	s.SetRotateFault(fakecoord.RotateOK)
	pending, _ := pendingKey(t, dir)
	h.stop()
	// The crash came after the key file was replaced, before the identity.
	if err := os.WriteFile(filepath.Join(dir, state.FileWGKey), []byte(pending.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	asked := len(s.Rotations())

	h = start(t, dir, nil)
	pub := wire.NodePublic(pending.PublicKey())
	waitFor(t, "the node up with the committed key", func() bool {
		return h.engines.Last() != nil && h.engineKey() == pub
	})
	checkRotatedTo(t, h, s, up.NodeID, pub)
	if n := len(s.Rotations()); n != asked {
		t.Errorf("%d more rotation calls; a finished commit needs none", n-asked)
	}
}

func TestScheduledRotationFollowsTheClock(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true, CertLifetime: 48 * time.Hour})
	var offset atomic.Int64
	clock := func(c *agent.Config) {
		c.KeyRotation = time.Hour
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	}
	dir := t.TempDir()
	h := start(t, dir, clock)
	up := h.enroll(s)
	old := h.state().Identity.WireGuardKey
	if n := len(s.Rotations()); n != 0 {
		t.Fatalf("%d rotations before the key is an hour old", n)
	}
	h.stop()

	// Two hours later (on the agent's clock) the key is due at start.
	offset.Store(int64(2 * time.Hour))
	h = start(t, dir, clock)
	waitFor(t, "a scheduled rotation", func() bool { return len(s.Rotations()) > 0 })
	waitFor(t, "the rotated key applied", func() bool {
		return h.engines.Last() != nil && h.engineKey() != old && !h.engineKey().IsZero()
	})
	checkRotatedTo(t, h, s, up.NodeID, h.engineKey())
	if n := len(s.Rotations()); n != 1 {
		t.Errorf("%d rotations, want 1: the new key is not due for another hour", n)
	}
}
