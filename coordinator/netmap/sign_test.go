package netmap

import (
	"context"
	"crypto/ed25519"
	"math/rand/v2"
	"testing"

	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

// TestCachedDigestsEqualFromScratch drives random network changes through
// full updates and peer patches and checks, after every step, that the
// digest a subscriber state signs (with its cached peer digests) is the
// digest of the map it holds computed from scratch, the one agents check.
func TestCachedDigestsEqualFromScratch(t *testing.T) {
	pols := []*policy.Policy{nil, mustParse(t, policyText), mustParse(t, withoutAPIToDB)}
	src := newFakeSource()
	comp := NewPolicyComputer()
	rng := rand.New(rand.NewPCG(3, 5))
	held := map[wire.NodeID]*state{}
	for step := range 300 {
		src.change(func(f *fakeSource) { randomChange(rng, f, pols) })
		snap, _ := src.Snapshot(context.Background())
		for _, ch := range comp.Update(snap) {
			st := held[ch.Node]
			if st == nil {
				continue
			}
			if ch.Full {
				nm, ok := comp.Netmap(ch.Node)
				if !ok {
					delete(held, ch.Node)
					continue
				}
				st.update(nm)
			} else {
				st.patch(snap.Version, ch.Peers, func(p wire.NodeID) (wire.Peer, bool) { return comp.Peer(ch.Node, p) })
			}
		}
		for _, n := range snap.Nodes {
			st := held[n.ID]
			if st == nil {
				nm, _ := comp.Netmap(n.ID)
				held[n.ID] = newState(nm)
				continue
			}
			if got, want := st.digest(n.ID), st.netmap().Digest(n.ID); got != want {
				t.Fatalf("step %d: %s's cached digest differs from the digest of the map it holds", step, n.ID)
			}
		}
	}
}

// TestHubSignsEveryMessage checks the hub's own output: the first full
// map and each later delta verify, applied in order, with the hub's key.
func TestHubSignsEveryMessage(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	src := newFakeSource()
	rng := rand.New(rand.NewPCG(1, 2))
	pols := []*policy.Policy{mustParse(t, policyText), mustParse(t, withoutAPIToDB)}
	self := testNode(1, "tag:api")
	for range 20 {
		src.change(func(f *fakeSource) { randomChange(rng, f, pols); f.nodes[self.ID] = self })
	}
	h := NewHub(HubConfig{Source: src, SigningKey: key, QueueLen: 1024})
	defer h.Close()
	id := self.ID
	sub, err := h.Subscribe(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	pub := h.NetmapKey()
	m := <-sub.Messages()
	if err := wire.VerifyNetmap(pub, id, m.Netmap, m.Signature); err != nil {
		t.Fatalf("full map: %v", err)
	}
	have := m.Netmap
	deltas := 0
	for step := range 100 {
		src.change(func(f *fakeSource) {
			randomChange(rng, f, pols)
			f.nodes[id] = self // keep the subscriber
		})
		snap2, _ := src.Snapshot(context.Background())
		h.mu.Lock()
		h.applyLocked(snap2)
		h.mu.Unlock()
		for len(sub.ch) > 0 {
			m := <-sub.Messages()
			next, err := have.Apply(m.Delta)
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			if err := wire.VerifyNetmap(pub, id, next, m.Signature); err != nil {
				t.Fatalf("step %d: delta to version %d: %v", step, m.Delta.Version, err)
			}
			have = next
			deltas++
		}
	}
	if deltas < 10 {
		t.Fatalf("only %d deltas in 100 changes; the test proves little", deltas)
	}
}
