package netmap

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/latchnet/latch/wire"
)

// benchNetwork returns n nodes spread over 50 tags and a policy chaining
// them: tag:t<i> may reach tag:t<i+1> on 443/tcp.
func benchNetwork(b *testing.B, n int) ([]Node, *Snapshot) {
	const tags = 50
	var pol strings.Builder
	pol.WriteString(`{"tagOwners": {`)
	for i := range tags {
		fmt.Fprintf(&pol, `"tag:t%d": [],`, i)
	}
	pol.WriteString(`}, "rules": [`)
	for i := range tags - 1 {
		fmt.Fprintf(&pol, `{"src": ["tag:t%d"], "dst": ["tag:t%d:443/tcp"]},`, i, i+1)
	}
	pol.WriteString(`]}`)
	p := mustParse(b, pol.String())
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i] = benchNode(i, wire.Tag(fmt.Sprintf("tag:t%d", i%tags)))
	}
	return nodes, NewSnapshot(Snapshot{Version: 1, Nodes: append([]Node(nil), nodes...), PolicyVersion: 1, Policy: p})
}

func benchNode(i int, tag wire.Tag) Node {
	var k wire.NodePublic
	k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
	return Node{Node: wire.Node{
		ID:        wire.NodeID(fmt.Sprintf("n%06d", i)),
		Name:      fmt.Sprintf("host%d", i),
		Key:       k,
		Addresses: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)}), 32)},
		Tags:      []wire.Tag{tag},
	}}
}

// snapSource hands out one prepared snapshot.
type snapSource struct{ s *Snapshot }

func (s snapSource) Snapshot(context.Context) (*Snapshot, error) { return s.s, nil }

// BenchmarkNodeJoinFanOut measures what one node joining costs the hub
// at 10,000 connected nodes: the snapshot comparison, the compiler's
// incremental update and the deltas to the ~200 nodes that may see it.
func BenchmarkNodeJoinFanOut(b *testing.B) { benchJoinFanOut(b, nil) }

// BenchmarkNodeJoinFanOutSigned is BenchmarkNodeJoinFanOut with every
// message signed, as the coordinator sends them.
func BenchmarkNodeJoinFanOutSigned(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(nil)
	benchJoinFanOut(b, key)
}

func benchJoinFanOut(b *testing.B, key ed25519.PrivateKey) {
	const n = 10000
	nodes, base := benchNetwork(b, n)
	h := NewHub(HubConfig{Source: snapSource{base}, QueueLen: 4, SigningKey: key})
	defer h.Close()
	for _, nd := range nodes {
		sub, err := h.Subscribe(context.Background(), nd.ID)
		if err != nil {
			b.Fatal(err)
		}
		<-sub.Messages()
	}
	// Alternate between the network with and without one extra node.
	joiner := benchNode(n, "tag:t0")
	with := append(append([]Node(nil), nodes...), joiner)
	version := uint64(1)
	sent := 0
	b.ResetTimer()
	for i := range b.N {
		version++
		ns := nodes
		if i%2 == 0 {
			ns = with
		}
		snap := NewSnapshot(Snapshot{Version: version, Nodes: append([]Node(nil), ns...), PolicyVersion: 1, Policy: base.Policy})
		h.mu.Lock()
		h.applyLocked(snap)
		h.mu.Unlock()
		b.StopTimer()
		h.mu.Lock()
		for _, s := range h.subs {
			for len(s.ch) > 0 {
				<-s.ch
				sent++
			}
		}
		if len(h.subs) != n {
			b.Fatalf("%d subscribers left", len(h.subs))
		}
		h.mu.Unlock()
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(sent)/float64(b.N), "deltas/op")
}
