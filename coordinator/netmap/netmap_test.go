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

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/latchnet/latch/acl/compile"
	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

// policyText is the reference policy of the tests: web may reach the api
// service, api the db service; ci may only ask for db access.
const policyText = `{
  "groups": {"group:dba": ["alice@example.com"]},
  "tagOwners": {"tag:web": [], "tag:api": [], "tag:db": [], "tag:ci": []},
  "services": {
    "svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]},
    "svc:db":  {"tags": ["tag:db"],  "ports": ["5432/tcp"]},
  },
  "rules": [
    {"src": ["tag:web"], "dst": ["svc:api"]},
    {"src": ["tag:api"], "dst": ["svc:db"]},
  ],
  "access": [
    {"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba"], "maxDuration": "1h"},
  ],
  "tests": [
    {"src": "tag:web", "accept": ["svc:api"], "deny": ["svc:db", "tag:db:22"]},
  ],
}`

// withoutAPIToDB is policyText without the api -> db rule.
const withoutAPIToDB = `{
  "tagOwners": {"tag:web": [], "tag:api": [], "tag:db": [], "tag:ci": []},
  "services": {
    "svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]},
    "svc:db":  {"tags": ["tag:db"],  "ports": ["5432/tcp"]},
  },
  "rules": [{"src": ["tag:web"], "dst": ["svc:api"]}],
}`

// cmpOpts lets cmp compare netip values.
var cmpOpts = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}, netip.AddrPort{})

func mustParse(t testing.TB, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(src))
	if err != nil {
		t.Fatalf("parsing test policy: %v", err)
	}
	return p
}

// fakeSource is a Source over an in-memory network.
type fakeSource struct {
	mu      sync.Mutex
	version uint64
	nodes   map[wire.NodeID]Node
	polV    int
	pol     *policy.Policy
	grants  map[string]compile.Grant
}

func newFakeSource() *fakeSource {
	return &fakeSource{version: 1, nodes: map[wire.NodeID]Node{}, grants: map[string]compile.Grant{}}
}

func (f *fakeSource) Snapshot(context.Context) (*Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snapshotLocked(), nil
}

func (f *fakeSource) snapshotLocked() *Snapshot {
	var ns []Node
	for _, n := range f.nodes {
		ns = append(ns, n)
	}
	var gs []compile.Grant
	for _, g := range f.grants {
		gs = append(gs, g)
	}
	return NewSnapshot(Snapshot{Version: f.version, Nodes: ns, PolicyVersion: f.polV, Policy: f.pol, Grants: gs})
}

// change applies fn and bumps the version, returning it.
func (f *fakeSource) change(fn func(f *fakeSource)) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
	f.version++
	return f.version
}

func add(n Node) func(*fakeSource) { return func(f *fakeSource) { f.nodes[n.ID] = n } }

func del(id wire.NodeID) func(*fakeSource) { return func(f *fakeSource) { delete(f.nodes, id) } }

func setPolicy(p *policy.Policy) func(*fakeSource) {
	return func(f *fakeSource) { f.polV++; f.pol = p }
}

func grant(g compile.Grant) func(*fakeSource) { return func(f *fakeSource) { f.grants[g.ID] = g } }

func ungrant(id string) func(*fakeSource) { return func(f *fakeSource) { delete(f.grants, id) } }

// testNode returns node i with the given tags.
func testNode(i int, tags ...wire.Tag) Node {
	var k wire.NodePublic
	k[0], k[1] = byte(i), 1
	return Node{Node: wire.Node{
		ID:   wire.NodeID(fmt.Sprintf("n%03d", i)),
		Name: fmt.Sprintf("host%d", i),
		Key:  k,
		Addresses: []netip.Prefix{
			netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, byte(i)}), 32),
			netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 1, 15: byte(i)}), 128),
		},
		Endpoints: []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), 51820)},
		Tags:      tags,
		Created:   time.Date(2026, 11, 1, 0, 0, i, 0, time.UTC),
	}}
}

// The reference hosts.
var (
	web = testNode(1, "tag:web")
	api = testNode(2, "tag:api")
	db  = testNode(3, "tag:db")
	ci  = testNode(4, "tag:ci")
)

// reference returns a source holding web, api, db and ci under policyText.
func reference(t testing.TB) *fakeSource {
	src := newFakeSource()
	src.change(setPolicy(mustParse(t, policyText)))
	for _, n := range []Node{web, api, db, ci} {
		src.change(add(n))
	}
	return src
}

func newTestHub(t *testing.T, src Source, queue int) *Hub {
	t.Helper()
	h := NewHub(HubConfig{Source: src, QueueLen: queue})
	t.Cleanup(h.Close)
	return h
}

// waitVersion polls until the hub has applied version v; by then every
// message of that version is queued.
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

// notify tells h about change v and waits until it is applied.
func notify(t *testing.T, h *Hub, v uint64) {
	t.Helper()
	h.Notify()
	waitVersion(t, h, v)
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
		t.Fatalf("%s: unexpected message %+v (open=%v)", s.id, m.Delta, ok)
	default:
	}
}

// client follows one subscription like an agent.
type client struct {
	t   *testing.T
	sub *Subscription
	nm  *wire.Netmap
}

func subscribe(t *testing.T, h *Hub, id wire.NodeID) *client {
	t.Helper()
	sub, err := h.Subscribe(context.Background(), id)
	if err != nil {
		t.Fatalf("subscribe %s: %v", id, err)
	}
	m := recv(t, sub)
	if m.Type != wire.MsgNetmap {
		t.Fatalf("first message %s, want a netmap", m.Type)
	}
	return &client{t: t, sub: sub, nm: m.Netmap}
}

// next applies the next message, which must be a delta, and returns it.
func (c *client) next() *wire.Delta {
	c.t.Helper()
	m := recv(c.t, c.sub)
	if m.Type != wire.MsgDelta {
		c.t.Fatalf("%s: got %s, want a delta", c.sub.id, m.Type)
	}
	nm, err := c.nm.Apply(m.Delta)
	if err != nil {
		c.t.Fatalf("%s: %v", c.sub.id, err)
	}
	c.nm = nm
	return m.Delta
}

func peerIDs(nm *wire.Netmap) []wire.NodeID {
	var ids []wire.NodeID
	for _, p := range nm.Peers {
		ids = append(ids, p.ID)
	}
	return ids
}

func peer(nm *wire.Netmap, id wire.NodeID) (wire.Peer, bool) {
	for _, p := range nm.Peers {
		if p.ID == id {
			return p, true
		}
	}
	return wire.Peer{}, false
}

func TestNoPolicyMeansNoPeersAndNoRules(t *testing.T) {
	src := newFakeSource()
	for _, n := range []Node{web, api, db, ci} {
		src.change(add(n))
	}
	h := newTestHub(t, src, 16)
	for _, n := range []Node{web, api, db, ci} {
		c := subscribe(t, h, n.ID)
		if len(c.nm.Peers) != 0 || len(c.nm.Rules) != 0 || c.nm.Self.ID != n.ID {
			t.Fatalf("%s without a policy: %+v", n.Name, c.nm)
		}
	}
}

func TestPolicyDecidesPeersAndRules(t *testing.T) {
	src := reference(t)
	h := newTestHub(t, src, 16)
	maps := map[string]*wire.Netmap{}
	for _, n := range []Node{web, api, db, ci} {
		maps[n.Name] = subscribe(t, h, n.ID).nm
	}
	tests := []struct {
		node  Node
		peers []wire.NodeID
	}{
		{web, []wire.NodeID{api.ID}},
		{api, []wire.NodeID{web.ID, db.ID}},
		{db, []wire.NodeID{api.ID}},
		{ci, nil},
	}
	for _, tt := range tests {
		nm := maps[tt.node.Name]
		if d := cmp.Diff(tt.peers, peerIDs(nm)); d != "" {
			t.Errorf("%s's peers (-want +got):\n%s", tt.node.Name, d)
		}
	}
	// web may reach api but api may not start flows to web: no rules.
	if p, _ := peer(maps["host1"], api.ID); len(p.Rules) != 0 || len(maps["host1"].Rules) != 0 {
		t.Errorf("web: api entry rules %v, own rules %+v; want none", p.Rules, maps["host1"].Rules)
	}
	// db admits api on 5432/tcp by one rule, which api's entry names.
	dbm := maps["host3"]
	if len(dbm.Rules) != 1 {
		t.Fatalf("db rules %+v, want one", dbm.Rules)
	}
	r := dbm.Rules[0]
	if !slices.Equal(r.Protocols, []wire.Proto{wire.ProtoTCP}) || !slices.Equal(r.Ports, []wire.PortRange{{First: 5432, Last: 5432}}) ||
		len(r.Sources) != 0 || !r.Expires.IsZero() {
		t.Errorf("db rule %+v, want 5432/tcp, no sources, no expiry", r)
	}
	if p, _ := peer(dbm, api.ID); !slices.Equal(p.Rules, []string{r.ID}) || !NodeEqual(p.Node, api.Node) {
		t.Errorf("db's entry for api %+v, want api admitted by %s", p, r.ID)
	}
	// api admits web on 8080/tcp and sees db without admitting it.
	apim := maps["host2"]
	if len(apim.Rules) != 1 || !slices.Equal(apim.Rules[0].Ports, []wire.PortRange{{First: 8080, Last: 8080}}) {
		t.Fatalf("api rules %+v", apim.Rules)
	}
	if p, _ := peer(apim, web.ID); !slices.Equal(p.Rules, []string{apim.Rules[0].ID}) {
		t.Errorf("api's entry for web %+v", p)
	}
	if p, _ := peer(apim, db.ID); len(p.Rules) != 0 {
		t.Errorf("api's entry for db %+v: db may not start flows to api", p)
	}
}

func TestNodeJoinSendsDeltasOnlyToAffectedNodes(t *testing.T) {
	src := reference(t)
	h := newTestHub(t, src, 16)
	cs := map[wire.NodeID]*client{}
	for _, n := range []Node{web, api, db, ci} {
		cs[n.ID] = subscribe(t, h, n.ID)
	}
	// A second web node joins: only api may see it.
	web2 := testNode(5, "tag:web")
	v := src.change(add(web2))
	notify(t, h, v)
	d := cs[api.ID].next()
	if len(d.Upsert) != 1 || d.Upsert[0].ID != web2.ID || len(d.Remove) != 0 || d.RulesChanged || d.Self != nil {
		t.Fatalf("api's delta %+v: want web2 upserted, nothing else", d)
	}
	if !slices.Equal(d.Upsert[0].Rules, []string{cs[api.ID].nm.Rules[0].ID}) {
		t.Fatalf("web2 admitted by %v", d.Upsert[0].Rules)
	}
	for _, n := range []Node{web, db, ci} {
		expectNone(t, cs[n.ID].sub)
	}
	// An untagged node joins: nobody may see it.
	v = src.change(add(testNode(6)))
	notify(t, h, v)
	for _, c := range cs {
		expectNone(t, c.sub)
	}
	// web2's stream starts with the full map.
	w2 := subscribe(t, h, web2.ID)
	if !slices.Equal(peerIDs(w2.nm), []wire.NodeID{api.ID}) {
		t.Fatalf("web2 peers %v", peerIDs(w2.nm))
	}
	// web2 leaves: api loses it, nobody else hears of it; web2's stream ends.
	v = src.change(del(web2.ID))
	notify(t, h, v)
	if d := cs[api.ID].next(); !slices.Equal(d.Remove, []wire.NodeID{web2.ID}) || len(d.Upsert) != 0 {
		t.Fatalf("api's delta on web2 leaving %+v", d)
	}
	for _, n := range []Node{web, db, ci} {
		expectNone(t, cs[n.ID].sub)
	}
	if _, ok := <-w2.sub.Messages(); ok || w2.sub.Err() != ErrNodeDeleted {
		t.Fatalf("web2's stream: err %v", w2.sub.Err())
	}
	if _, err := h.Subscribe(context.Background(), web2.ID); err != ErrUnknownNode {
		t.Fatalf("subscribe deleted node: %v", err)
	}
}

func TestEndpointChangeReachesOnlyNodesThatSeeIt(t *testing.T) {
	src := reference(t)
	h := newTestHub(t, src, 16)
	cs := map[wire.NodeID]*client{}
	for _, n := range []Node{web, api, db, ci} {
		cs[n.ID] = subscribe(t, h, n.ID)
	}
	moved := api
	moved.Endpoints = []netip.AddrPort{netip.MustParseAddrPort("198.18.0.99:41641")}
	v := src.change(add(moved))
	notify(t, h, v)
	for _, n := range []Node{web, db} {
		d := cs[n.ID].next()
		if len(d.Upsert) != 1 || d.Upsert[0].ID != api.ID || d.Upsert[0].Endpoints[0] != moved.Endpoints[0] || d.RulesChanged {
			t.Fatalf("%s's delta %+v", n.Name, d)
		}
	}
	if d := cs[api.ID].next(); d.Self == nil || d.Self.Endpoints[0] != moved.Endpoints[0] || len(d.Upsert) != 0 || d.RulesChanged {
		t.Fatalf("api's own delta %+v", d)
	}
	expectNone(t, cs[ci.ID].sub)
}

func TestPolicyChangeReachesTheNodesItChanges(t *testing.T) {
	src := reference(t)
	h := newTestHub(t, src, 16)
	cs := map[wire.NodeID]*client{}
	for _, n := range []Node{web, api, db, ci} {
		cs[n.ID] = subscribe(t, h, n.ID)
	}
	v := src.change(setPolicy(mustParse(t, withoutAPIToDB)))
	notify(t, h, v)
	if d := cs[db.ID].next(); !slices.Equal(d.Remove, []wire.NodeID{api.ID}) || !d.RulesChanged || len(cs[db.ID].nm.Rules) != 0 {
		t.Fatalf("db's delta %+v", d)
	}
	if d := cs[api.ID].next(); !slices.Equal(d.Remove, []wire.NodeID{db.ID}) || d.RulesChanged {
		t.Fatalf("api's delta %+v", d)
	}
	// web's map is the same under the new policy (rule IDs are stable).
	expectNone(t, cs[web.ID].sub)
	expectNone(t, cs[ci.ID].sub)
	// No policy at all: nothing.
	v = src.change(setPolicy(nil))
	notify(t, h, v)
	for _, n := range []Node{web, api} {
		cs[n.ID].next()
		if nm := cs[n.ID].nm; len(nm.Peers) != 0 || len(nm.Rules) != 0 {
			t.Fatalf("%s without a policy: %+v", n.Name, nm)
		}
	}
}

func TestGrantOpensTheServiceToItsSourceUntilRemoved(t *testing.T) {
	src := reference(t)
	h := newTestHub(t, src, 16)
	cs := map[wire.NodeID]*client{}
	for _, n := range []Node{web, api, db, ci} {
		cs[n.ID] = subscribe(t, h, n.ID)
	}
	expires := time.Date(2026, 11, 1, 13, 0, 0, 0, time.UTC)
	g := compile.Grant{ID: "0123456789ab", Src: ci.ID, Service: "svc:db",
		Ports: []policy.PortSpec{{Proto: wire.ProtoTCP, Ports: wire.PortRange{First: 5432, Last: 5432}}}, Expires: expires}
	v := src.change(grant(g))
	notify(t, h, v)
	if d := cs[ci.ID].next(); len(d.Upsert) != 1 || d.Upsert[0].ID != db.ID || len(d.Upsert[0].Rules) != 0 {
		t.Fatalf("ci's delta %+v: want db, reachable", d)
	}
	cs[db.ID].next()
	dbm := cs[db.ID].nm
	var gr *wire.FilterRule
	for i := range dbm.Rules {
		if dbm.Rules[i].ID == "grant-"+g.ID {
			gr = &dbm.Rules[i]
		}
	}
	if gr == nil || !gr.Expires.Equal(expires) || !slices.Equal(gr.Ports, []wire.PortRange{{First: 5432, Last: 5432}}) {
		t.Fatalf("db rules %+v: want grant-%s on 5432 until %v", dbm.Rules, g.ID, expires)
	}
	if p, ok := peer(dbm, ci.ID); !ok || !slices.Equal(p.Rules, []string{gr.ID}) {
		t.Fatalf("db's entry for ci %+v", p)
	}
	expectNone(t, cs[web.ID].sub)
	expectNone(t, cs[api.ID].sub)

	v = src.change(ungrant(g.ID))
	notify(t, h, v)
	if d := cs[ci.ID].next(); !slices.Equal(d.Remove, []wire.NodeID{db.ID}) {
		t.Fatalf("ci's delta on revoke %+v", d)
	}
	if d := cs[db.ID].next(); !slices.Equal(d.Remove, []wire.NodeID{ci.ID}) || !d.RulesChanged || len(cs[db.ID].nm.Rules) != 1 {
		t.Fatalf("db's delta on revoke %+v", d)
	}
}

func TestSlowSubscriberIsDroppedWithoutBlockingOthers(t *testing.T) {
	src := reference(t)
	h := newTestHub(t, src, 2)
	slow, _ := h.Subscribe(context.Background(), web.ID) // never read
	fast := subscribe(t, h, api.ID)
	var v uint64
	for i := 10; i < 20; i++ {
		v = src.change(add(testNode(i, "tag:web")))
		notify(t, h, v) // each change is fanned out separately
		fast.next()
	}
	if fast.nm.Version != v || len(fast.nm.Peers) != 12 {
		t.Fatalf("fast subscriber at version %d with %d peers", fast.nm.Version, len(fast.nm.Peers))
	}
	// web sees none of the new web nodes; make it see api change instead.
	for i := range 3 {
		moved := api
		moved.Endpoints = []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 1)}
		v = src.change(add(moved))
		notify(t, h, v)
	}
	if slow.Err() != ErrSlow {
		t.Fatalf("slow subscriber: %v, want ErrSlow", slow.Err())
	}
	if h.Online(web.ID) {
		t.Fatal("dropped subscriber still online")
	}
	// It reconnects and starts over from a full map.
	again := subscribe(t, h, web.ID)
	if again.nm.Version != v {
		t.Fatalf("reconnect got version %d, want %d", again.nm.Version, v)
	}
}

func TestNewStreamReplacesOldOne(t *testing.T) {
	src := reference(t)
	h := newTestHub(t, src, 4)
	old, _ := h.Subscribe(context.Background(), web.ID)
	cur, _ := h.Subscribe(context.Background(), web.ID)
	if old.Err() != ErrReplaced || cur.Err() != nil {
		t.Fatalf("old %v, new %v", old.Err(), cur.Err())
	}
	old.Close() // must not end the new one
	if !h.Online(web.ID) {
		t.Fatal("closing the replaced stream took the node offline")
	}
	cur.Close()
	cur.Close()
	if h.Online(web.ID) {
		t.Fatal("still online after Close")
	}
}

// randomNetwork mutates src at random: nodes join, leave, change tags or
// endpoints; policies and grants change.
func randomChange(rng *rand.Rand, f *fakeSource, pols []*policy.Policy) {
	tags := []wire.Tag{"tag:web", "tag:api", "tag:db", "tag:ci"}
	switch k := rng.IntN(10); {
	case k == 0:
		p := pols[rng.IntN(len(pols))]
		f.polV++
		f.pol = p
	case k == 1:
		id := fmt.Sprintf("g%d", rng.IntN(4))
		if _, ok := f.grants[id]; ok {
			delete(f.grants, id)
			break
		}
		f.grants[id] = compile.Grant{ID: id, Src: wire.NodeID(fmt.Sprintf("n%03d", 1+rng.IntN(30))), Service: "svc:db",
			Ports:   []policy.PortSpec{{Proto: wire.ProtoTCP, Ports: wire.PortRange{First: 5432, Last: 5432}}},
			Expires: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)}
	case k < 4:
		delete(f.nodes, wire.NodeID(fmt.Sprintf("n%03d", 1+rng.IntN(30))))
	default:
		i := 1 + rng.IntN(30)
		var nt []wire.Tag
		if rng.IntN(4) > 0 {
			nt = []wire.Tag{tags[rng.IntN(len(tags))]}
		}
		n := testNode(i, nt...)
		if rng.IntN(3) == 0 {
			n.Endpoints = append(n.Endpoints, netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.IntN(9))}), 1))
		}
		f.nodes[n.ID] = n
	}
}

func TestIncrementalNetmapsEqualFromScratch(t *testing.T) {
	pols := []*policy.Policy{nil, mustParse(t, policyText), mustParse(t, withoutAPIToDB)}
	src := newFakeSource()
	inc := NewPolicyComputer()
	rng := rand.New(rand.NewPCG(7, 9))
	held := map[wire.NodeID]*state{} // what each node would hold after deltas
	for step := range 400 {
		src.change(func(f *fakeSource) { randomChange(rng, f, pols) })
		snap, _ := src.Snapshot(context.Background())
		for _, ch := range inc.Update(snap) {
			st := held[ch.Node]
			if st == nil {
				continue
			}
			if ch.Full {
				nm, ok := inc.Netmap(ch.Node)
				if !ok {
					delete(held, ch.Node)
					continue
				}
				st.update(nm)
			} else {
				st.patch(snap.Version, ch.Peers, func(p wire.NodeID) (wire.Peer, bool) { return inc.Peer(ch.Node, p) })
			}
		}
		scratch := NewPolicyComputer()
		scratch.Update(snap)
		for _, n := range snap.Nodes {
			want, _ := scratch.Netmap(n.ID)
			got, _ := inc.Netmap(n.ID)
			if !netmapEqual(want, got) {
				t.Fatalf("step %d: %s's incremental netmap differs from scratch (-want +got):\n%s", step, n.ID, cmp.Diff(want, got, cmpOpts))
			}
			st := held[n.ID]
			if st == nil {
				held[n.ID] = newState(want)
				continue
			}
			have := st.netmap()
			have.Version = want.Version
			if !netmapEqual(have, want) {
				t.Fatalf("step %d: %s holds %+v after deltas, want %+v", step, n.ID, have, want)
			}
		}
	}
}

func netmapEqual(a, b *wire.Netmap) bool {
	return a.Version == b.Version && NodeEqual(a.Self, b.Self) &&
		slices.EqualFunc(a.Peers, b.Peers, PeerEqual) && slices.EqualFunc(a.Rules, b.Rules, ruleEqual)
}

func TestSubscriberConvergesUnderChurn(t *testing.T) {
	pols := []*policy.Policy{mustParse(t, policyText), mustParse(t, withoutAPIToDB)}
	src := reference(t)
	h := newTestHub(t, src, 4096)
	c := subscribe(t, h, api.ID)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(3, uint64(w)))
			for range 50 {
				src.change(func(f *fakeSource) {
					randomChange(rng, f, pols)
					f.nodes[api.ID] = api // keep the subscriber
				})
				h.Notify()
			}
		}()
	}
	wg.Wait()
	snap, _ := src.Snapshot(context.Background())
	notify(t, h, snap.Version)
	scratch := NewPolicyComputer()
	scratch.Update(snap)
	want, _ := scratch.Netmap(api.ID)
	// Every message up to snap.Version is queued: apply them all.
	for len(c.sub.Messages()) > 0 {
		c.next()
	}
	c.nm.Version = want.Version
	if d := cmp.Diff(want, c.nm, cmpOpts); d != "" {
		t.Fatalf("subscriber's netmap diverged from the computed one (-want +got):\n%s", d)
	}
}

func TestStateUpdateDeltaAppliesToNext(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pols := []*policy.Policy{nil, mustParse(t, policyText), mustParse(t, withoutAPIToDB)}
	randomMap := func(version uint64) *wire.Netmap {
		src := newFakeSource()
		src.version = version
		for range 20 {
			randomChange(rng, src, pols)
		}
		src.nodes[api.ID] = api
		c := NewPolicyComputer()
		c.Update(src.snapshotLocked())
		nm, _ := c.Netmap(api.ID)
		if rng.IntN(4) == 0 {
			nm.Self.Name = "renamed"
		}
		return nm
	}
	for i := range 300 {
		prev, next := randomMap(uint64(i)), randomMap(uint64(i+1))
		st := newState(prev)
		d := st.update(next)
		if d == nil {
			same := *next
			same.Version = prev.Version
			if !netmapEqual(prev, &same) {
				t.Fatalf("case %d: nil delta for different maps", i)
			}
			continue
		}
		got, err := prev.Apply(d)
		if err != nil {
			t.Fatal(err)
		}
		if !netmapEqual(got, next) || !netmapEqual(st.netmap(), next) {
			t.Fatalf("case %d: prev.Apply(delta) != next\ndelta %+v", i, d)
		}
		if newState(next).update(next) != nil {
			t.Fatalf("case %d: delta of a map with itself is not nil", i)
		}
	}
}

func TestCloseEndsSubscriptions(t *testing.T) {
	src := reference(t)
	h := NewHub(HubConfig{Source: src})
	sub, _ := h.Subscribe(context.Background(), web.ID)
	h.Close()
	recv(t, sub) // the queued netmap is still delivered
	if _, ok := <-sub.Messages(); ok || sub.Err() != ErrHubClosed {
		t.Fatalf("after Close: open=%v err=%v", ok, sub.Err())
	}
	if _, err := h.Subscribe(context.Background(), web.ID); err != ErrHubClosed {
		t.Fatalf("subscribe after Close: %v", err)
	}
}

func TestHubCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	src := reference(t)
	for range 5 {
		h := NewHub(HubConfig{Source: src})
		sub, err := h.Subscribe(context.Background(), web.ID)
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
