package netmap

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

type fakeSource struct {
	mu      sync.Mutex
	version uint64
	nodes   map[wire.NodeID]wire.Node
}

func newFakeSource() *fakeSource {
	return &fakeSource{version: 1, nodes: map[wire.NodeID]wire.Node{}}
}

func (f *fakeSource) Snapshot(context.Context) (*Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ns []wire.Node
	for _, n := range f.nodes {
		ns = append(ns, n)
	}
	return NewSnapshot(f.version, ns), nil
}

// change applies fn and bumps the version, returning it.
func (f *fakeSource) change(fn func(map[wire.NodeID]wire.Node)) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.nodes)
	f.version++
	return f.version
}

func testNode(i int) wire.Node {
	var k wire.NodePublic
	k[0], k[1] = byte(i), 1
	return wire.Node{
		ID:   wire.NodeID(fmt.Sprintf("n%03d", i)),
		Name: fmt.Sprintf("host%d", i),
		Key:  k,
		Addresses: []netip.Prefix{
			netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, byte(i)}), 32),
			netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 1, 15: byte(i)}), 128),
		},
		Endpoints: []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), 51820)},
		Created:   time.Date(2026, 11, 1, 0, 0, i, 0, time.UTC),
	}
}

func add(n wire.Node) func(map[wire.NodeID]wire.Node) {
	return func(m map[wire.NodeID]wire.Node) { m[n.ID] = n }
}

func del(id wire.NodeID) func(map[wire.NodeID]wire.Node) {
	return func(m map[wire.NodeID]wire.Node) { delete(m, id) }
}

func newTestHub(t *testing.T, src Source, queue int) *Hub {
	t.Helper()
	h := NewHub(HubConfig{Source: src, Computer: InterimAllPeers{}, QueueLen: queue})
	t.Cleanup(h.Close)
	return h
}

// waitVersion polls until the hub has applied version v.
func waitVersion(t *testing.T, h *Hub, v uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		got := h.snap != nil && h.snap.Version >= v
		h.mu.Unlock()
		if got {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub did not reach version %d", v)
		}
		time.Sleep(time.Millisecond)
	}
}

func recv(t *testing.T, s *Subscription) wire.StreamMessage {
	t.Helper()
	select {
	case m, ok := <-s.Messages():
		if !ok {
			t.Fatalf("subscription ended: %v", s.Err())
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
	}
	panic("unreachable")
}

func expectNone(t *testing.T, s *Subscription) {
	t.Helper()
	select {
	case m, ok := <-s.Messages():
		t.Fatalf("unexpected message %+v (open=%v)", m, ok)
	default:
	}
}

func TestInterimNetmapHasEveryOtherNodeAndOneRule(t *testing.T) {
	var nodes []wire.Node
	for _, i := range []int{3, 1, 2} {
		nodes = append(nodes, testNode(i))
	}
	s := NewSnapshot(7, nodes)
	nm, ok := InterimAllPeers{}.Compute(s, "n002")
	if !ok {
		t.Fatal("self not found")
	}
	if nm.Version != 7 || nm.Self.ID != "n002" {
		t.Fatalf("version %d self %s", nm.Version, nm.Self.ID)
	}
	if len(nm.Peers) != 2 || nm.Peers[0].ID != "n001" || nm.Peers[1].ID != "n003" {
		t.Fatalf("peers %v, want n001, n003 in order", nm.Peers)
	}
	for _, p := range nm.Peers {
		if !slices.Equal(p.Rules, []string{InterimRuleID}) {
			t.Errorf("peer %s admitted by rules %v, want the interim rule", p.ID, p.Rules)
		}
	}
	want := wire.FilterRule{
		ID: InterimRuleID,
		Protocols: []wire.Proto{wire.ProtoICMP, wire.ProtoTCP, wire.ProtoUDP, wire.ProtoICMPv6},
		Ports:     []wire.PortRange{{First: 1, Last: 65535}},
	}
	if len(nm.Rules) != 1 || !ruleEqual(nm.Rules[0], want) {
		t.Fatalf("rules %+v\nwant %+v", nm.Rules, want)
	}
	alone, _ := InterimAllPeers{}.Compute(NewSnapshot(1, []wire.Node{testNode(1)}), "n001")
	if len(alone.Peers) != 0 || len(alone.Rules) != 0 {
		t.Fatalf("a lone node got %+v", alone)
	}
	if _, ok := (InterimAllPeers{}).Compute(s, "n999"); ok {
		t.Fatal("computed a netmap for an unknown node")
	}
}

func netmapEqual(a, b *wire.Netmap) bool {
	return a.Version == b.Version && NodeEqual(a.Self, b.Self) &&
		slices.EqualFunc(a.Peers, b.Peers, PeerEqual) && slices.EqualFunc(a.Rules, b.Rules, ruleEqual)
}

func TestDiffAppliesToNext(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randomMap := func(version uint64) *wire.Netmap {
		var ns []wire.Node
		for i := range 12 {
			if rng.IntN(2) == 0 {
				n := testNode(i)
				if rng.IntN(3) == 0 {
					n.Endpoints = append(n.Endpoints, netip.MustParseAddrPort("192.0.2.1:1"))
				}
				ns = append(ns, n)
			}
		}
		ns = append(ns, testNode(99))
		nm, _ := InterimAllPeers{}.Compute(NewSnapshot(version, ns), "n099")
		if rng.IntN(4) == 0 {
			nm.Self.Name = "renamed"
		}
		return nm
	}
	for i := range 500 {
		prev, next := randomMap(uint64(i)), randomMap(uint64(i+1))
		d := Diff(prev, next)
		if d == nil {
			if !netmapEqual(&wire.Netmap{Version: next.Version, Self: prev.Self, Peers: prev.Peers, Rules: prev.Rules}, next) {
				t.Fatalf("case %d: nil diff for different maps", i)
			}
			continue
		}
		got, err := prev.Apply(d)
		if err != nil {
			t.Fatal(err)
		}
		if !netmapEqual(got, next) {
			t.Fatalf("case %d: prev.Apply(Diff(prev, next)) != next\ndelta %+v", i, d)
		}
		if Diff(next, next) != nil {
			t.Fatalf("case %d: diff of a map with itself is not nil", i)
		}
	}
}

func TestStreamStartsFullThenDeltasOnJoinAndDelete(t *testing.T) {
	src := newFakeSource()
	src.change(add(testNode(1)))
	h := newTestHub(t, src, 16)
	a, err := h.Subscribe(context.Background(), "n001")
	if err != nil {
		t.Fatal(err)
	}
	first := recv(t, a)
	if first.Type != wire.MsgNetmap || first.Netmap.Self.ID != "n001" || len(first.Netmap.Peers) != 0 {
		t.Fatalf("first message %+v", first)
	}
	if !h.Online("n001") || h.Online("n002") {
		t.Fatal("Online wrong")
	}
	have := first.Netmap

	// n002 joins: n001 gets it as an upsert.
	h.Notify()
	v := src.change(add(testNode(2)))
	h.Notify()
	m := recv(t, a)
	if m.Type != wire.MsgDelta || len(m.Delta.Upsert) != 1 || m.Delta.Upsert[0].ID != "n002" || !m.Delta.RulesChanged {
		t.Fatalf("join delta %+v", m.Delta)
	}
	if m.Delta.PrevVersion != have.Version || m.Delta.Version != v {
		t.Fatalf("delta versions %d->%d, want %d->%d", m.Delta.PrevVersion, m.Delta.Version, have.Version, v)
	}
	if have, err = have.Apply(m.Delta); err != nil {
		t.Fatal(err)
	}
	b, err := h.Subscribe(context.Background(), "n002")
	if err != nil {
		t.Fatal(err)
	}
	if bm := recv(t, b); len(bm.Netmap.Peers) != 1 || bm.Netmap.Peers[0].ID != "n001" {
		t.Fatalf("n002's netmap %+v", bm.Netmap)
	}

	// n002 is deleted: n001 gets a removal, n002's stream ends at once.
	v = src.change(del("n002"))
	h.Notify()
	m = recv(t, a)
	if m.Type != wire.MsgDelta || !slices.Equal(m.Delta.Remove, []wire.NodeID{"n002"}) || m.Delta.PrevVersion != have.Version || m.Delta.Version != v {
		t.Fatalf("delete delta %+v", m.Delta)
	}
	if _, ok := <-b.Messages(); ok {
		t.Fatal("deleted node's stream still open")
	}
	if b.Err() != ErrNodeDeleted {
		t.Fatalf("deleted node's stream ended with %v", b.Err())
	}
	if _, err := h.Subscribe(context.Background(), "n002"); err != ErrUnknownNode {
		t.Fatalf("subscribe deleted node: %v", err)
	}
}

func TestUnchangedNetmapSendsNothing(t *testing.T) {
	src := newFakeSource()
	src.change(add(testNode(1)))
	src.change(add(testNode(2)))
	// A computer that hides n003 from everyone: its changes are invisible to n001.
	h := NewHub(HubConfig{Source: src, Computer: hiding{"n003"}})
	defer h.Close()
	a, err := h.Subscribe(context.Background(), "n001")
	if err != nil {
		t.Fatal(err)
	}
	recv(t, a)
	v := src.change(add(testNode(3)))
	h.Notify()
	waitVersion(t, h, v)
	expectNone(t, a)
}

type hiding struct{ id wire.NodeID }

func (c hiding) Compute(s *Snapshot, self wire.NodeID) (*wire.Netmap, bool) {
	var ns []wire.Node
	for _, n := range s.Nodes {
		if n.ID != c.id {
			ns = append(ns, n)
		}
	}
	return InterimAllPeers{}.Compute(NewSnapshot(s.Version, ns), self)
}

func TestSlowSubscriberIsDroppedWithoutBlockingOthers(t *testing.T) {
	src := newFakeSource()
	src.change(add(testNode(1)))
	src.change(add(testNode(2)))
	h := newTestHub(t, src, 2)
	slow, _ := h.Subscribe(context.Background(), "n001") // never read
	fast, _ := h.Subscribe(context.Background(), "n002")
	have := recv(t, fast).Netmap
	var v uint64
	for i := 10; i < 20; i++ {
		v = src.change(add(testNode(i)))
		h.Notify()
		waitVersion(t, h, v) // each change is fanned out separately
		m := recv(t, fast)
		var err error
		if have, err = have.Apply(m.Delta); err != nil {
			t.Fatal(err)
		}
	}
	if have.Version != v || len(have.Peers) != 11 {
		t.Fatalf("fast subscriber at version %d with %d peers", have.Version, len(have.Peers))
	}
	if slow.Err() != ErrSlow {
		t.Fatalf("slow subscriber: %v, want ErrSlow", slow.Err())
	}
	if h.Online("n001") {
		t.Fatal("dropped subscriber still online")
	}
	// It reconnects and starts over from a full map.
	again, err := h.Subscribe(context.Background(), "n001")
	if err != nil {
		t.Fatal(err)
	}
	if m := recv(t, again); m.Type != wire.MsgNetmap || m.Netmap.Version != v {
		t.Fatalf("reconnect got %+v", m)
	}
}

func TestNewStreamReplacesOldOne(t *testing.T) {
	src := newFakeSource()
	src.change(add(testNode(1)))
	h := newTestHub(t, src, 4)
	old, _ := h.Subscribe(context.Background(), "n001")
	cur, _ := h.Subscribe(context.Background(), "n001")
	if old.Err() != ErrReplaced || cur.Err() != nil {
		t.Fatalf("old %v, new %v", old.Err(), cur.Err())
	}
	old.Close() // must not end the new one
	if !h.Online("n001") {
		t.Fatal("closing the replaced stream took the node offline")
	}
	cur.Close()
	cur.Close()
	if h.Online("n001") {
		t.Fatal("still online after Close")
	}
}

func TestSubscriberConvergesUnderChurn(t *testing.T) {
	src := newFakeSource()
	src.change(add(testNode(0)))
	h := newTestHub(t, src, 1024)
	sub, err := h.Subscribe(context.Background(), "n000")
	if err != nil {
		t.Fatal(err)
	}
	have := recv(t, sub).Netmap
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(3, uint64(w)))
			for i := range 50 {
				n := testNode(1 + rng.IntN(30))
				if (w+i)%3 == 0 {
					src.change(del(n.ID))
				} else {
					n.Endpoints = append(n.Endpoints, netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 1))
					src.change(add(n))
				}
				h.Notify()
			}
		}()
	}
	wg.Wait()
	snap, _ := src.Snapshot(context.Background())
	h.Notify()
	waitVersion(t, h, snap.Version)
	want, _ := InterimAllPeers{}.Compute(snap, "n000")
	for have.Version != want.Version {
		m := recv(t, sub)
		var err error
		if have, err = have.Apply(m.Delta); err != nil {
			t.Fatal(err)
		}
	}
	if !netmapEqual(have, want) {
		t.Fatal("subscriber's netmap diverged from the computed one")
	}
}

func TestCloseEndsSubscriptions(t *testing.T) {
	src := newFakeSource()
	src.change(add(testNode(1)))
	h := NewHub(HubConfig{Source: src, Computer: InterimAllPeers{}})
	sub, _ := h.Subscribe(context.Background(), "n001")
	h.Close()
	recv(t, sub) // the queued netmap is still delivered
	if _, ok := <-sub.Messages(); ok || sub.Err() != ErrHubClosed {
		t.Fatalf("after Close: open=%v err=%v", ok, sub.Err())
	}
	if _, err := h.Subscribe(context.Background(), "n001"); err != ErrHubClosed {
		t.Fatalf("subscribe after Close: %v", err)
	}
}

func TestHubCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	src := newFakeSource()
	src.change(add(testNode(1)))
	for range 5 {
		h := NewHub(HubConfig{Source: src, Computer: InterimAllPeers{}})
		sub, err := h.Subscribe(context.Background(), "n001")
		if err != nil {
			t.Fatal(err)
		}
		h.Notify()
		h.Close()
		sub.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines before, %d after closing every hub", before, runtime.NumGoroutine())
		}
		time.Sleep(time.Millisecond)
	}
}
