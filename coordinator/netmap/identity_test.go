package netmap

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

// identityPolicy: web reaches api only with a modern agent; quarantined
// nodes reach only the remediation server.
const identityPolicy = `{
  "tagOwners": {"tag:web": [], "tag:api": [], "tag:db": [], "tag:ci": [], "tag:remedy": []},
  "services": {"svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]}},
  "postures": {"posture:modern": ["agent_version >= 0.4"]},
  "rules": [
    {"src": ["tag:web"], "srcPosture": ["posture:modern"], "dst": ["svc:api"]},
    {"src": ["tag:api"], "dst": ["tag:web:22"]},
    {"src": ["status:quarantined"], "dst": ["tag:remedy:443"]},
  ],
}`

var remedy = testNode(5, "tag:remedy")

func modern(n Node) Node {
	n.Posture = map[string]string{wire.PostureAgentVersion: "0.4.1", wire.PostureOS: "linux"}
	return n
}

func identitySource(t *testing.T) *fakeSource {
	src := newFakeSource()
	src.change(setPolicy(mustParse(t, identityPolicy)))
	for _, n := range []Node{modern(web), api, remedy} {
		src.change(add(n))
	}
	return src
}

// TestIdentityStateDecidesWhoSeesWhom walks web through posture,
// quarantine and expiry changes and checks, after each, whom web and api
// see: every change reaches both through deltas.
func TestIdentityStateDecidesWhoSeesWhom(t *testing.T) {
	src := identitySource(t)
	h := newTestHub(t, src, 64)
	cw, ca, cr := subscribe(t, h, web.ID), subscribe(t, h, api.ID), subscribe(t, h, remedy.ID)
	expiry := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		name       string
		web        Node
		webSees    []wire.NodeID
		apiSees    []wire.NodeID
		remedySees []wire.NodeID
	}{
		{"modern posture", modern(web), []wire.NodeID{api.ID}, []wire.NodeID{web.ID}, nil},
		{"old agent: api still reaches web", func() Node { n := web; n.Posture = map[string]string{wire.PostureAgentVersion: "0.3.9"}; return n }(),
			[]wire.NodeID{api.ID}, []wire.NodeID{web.ID}, nil},
		{"no posture reported", web, []wire.NodeID{api.ID}, []wire.NodeID{web.ID}, nil},
		{"quarantined: only remediation", func() Node { n := modern(web); n.Quarantined = true; return n }(),
			[]wire.NodeID{remedy.ID}, nil, []wire.NodeID{web.ID}},
		{"released", modern(web), []wire.NodeID{api.ID}, []wire.NodeID{web.ID}, nil},
		{"key expiry set", func() Node { n := modern(web); n.KeyExpiry = expiry; return n }(), []wire.NodeID{api.ID}, []wire.NodeID{web.ID}, nil},
		{"expired", func() Node { n := modern(web); n.KeyExpiry = expiry; n.Expired = true; return n }(), nil, nil, nil},
		{"expired and quarantined", func() Node { n := modern(web); n.KeyExpiry = expiry; n.Expired = true; n.Quarantined = true; return n }(), nil, nil, nil},
		{"revived", modern(web), []wire.NodeID{api.ID}, []wire.NodeID{web.ID}, nil},
	}
	for _, st := range steps {
		v := src.change(add(st.web))
		notify(t, h, v)
		for _, c := range []*client{cw, ca, cr} {
			for len(c.sub.Messages()) > 0 {
				c.next()
			}
		}
		for _, w := range []struct {
			c    *client
			want []wire.NodeID
		}{{cw, st.webSees}, {ca, st.apiSees}, {cr, st.remedySees}} {
			if d := cmp.Diff(w.want, peerIDs(w.c.nm)); d != "" {
				t.Errorf("%s: %s's peers (-want +got):\n%s", st.name, w.c.sub.id, d)
			}
		}
		if st.web.Expired && len(cw.nm.Rules) != 0 {
			t.Errorf("%s: expired web still has rules %+v", st.name, cw.nm.Rules)
		}
		if !cw.nm.Self.KeyExpiry.Equal(st.web.KeyExpiry) {
			t.Errorf("%s: web's Self.KeyExpiry %v, want %v", st.name, cw.nm.Self.KeyExpiry, st.web.KeyExpiry)
		}
		if p, ok := peer(ca.nm, web.ID); ok && !p.KeyExpiry.Equal(st.web.KeyExpiry) {
			t.Errorf("%s: api's entry for web has KeyExpiry %v, want %v", st.name, p.KeyExpiry, st.web.KeyExpiry)
		}
	}
}

// TestExpiredNodeStillSubscribes: an expired node's stream opens and
// carries its (empty) netmap with its key expiry.
func TestExpiredNodeStillSubscribes(t *testing.T) {
	src := identitySource(t)
	gone := modern(testNode(9, "tag:web"))
	gone.KeyExpiry = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	gone.Expired = true
	src.change(add(gone))
	h := newTestHub(t, src, 16)
	c := subscribe(t, h, gone.ID)
	if len(c.nm.Peers) != 0 || len(c.nm.Rules) != 0 || !c.nm.Self.KeyExpiry.Equal(gone.KeyExpiry) {
		t.Fatalf("expired node's netmap %+v", c.nm)
	}
	if cw := subscribe(t, h, api.ID); slices.Contains(peerIDs(cw.nm), gone.ID) {
		t.Fatal("api sees the expired node")
	}
}

// TestIncrementalNetmapsEqualFromScratchWithIdentity is
// TestIncrementalNetmapsEqualFromScratch with posture, quarantine and
// expiry changing too.
func TestIncrementalNetmapsEqualFromScratchWithIdentity(t *testing.T) {
	pols := []*policy.Policy{nil, mustParse(t, policyText), mustParse(t, identityPolicy)}
	src := newFakeSource()
	inc := NewPolicyComputer()
	rng := rand.New(rand.NewPCG(11, 13))
	for step := range 400 {
		src.change(func(f *fakeSource) {
			if rng.IntN(2) == 0 {
				randomChange(rng, f, pols)
				return
			}
			identityChange(rng, f)
		})
		snap, _ := src.Snapshot(context.Background())
		inc.Update(snap)
		scratch := NewPolicyComputer()
		scratch.Update(snap)
		for _, n := range snap.Nodes {
			want, _ := scratch.Netmap(n.ID)
			got, _ := inc.Netmap(n.ID)
			if !netmapEqual(want, got) {
				t.Fatalf("step %d: %s's incremental netmap differs from scratch (-want +got):\n%s", step, n.ID, cmp.Diff(want, got, cmpOpts))
			}
			if n.Expired && (len(got.Peers) != 0 || len(got.Rules) != 0) {
				t.Fatalf("step %d: expired %s sees %v", step, n.ID, peerIDs(got))
			}
			for _, p := range got.Peers {
				if pn, _ := snap.Node(p.ID); pn.Expired {
					t.Fatalf("step %d: %s sees expired %s", step, n.ID, p.ID)
				}
			}
		}
	}
}

// identityChange flips one node's posture, quarantine, key expiry or
// expired flag at random.
func identityChange(rng *rand.Rand, f *fakeSource) {
	var ids []wire.NodeID
	for id := range f.nodes {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return
	}
	slices.Sort(ids)
	n := f.nodes[ids[rng.IntN(len(ids))]]
	switch rng.IntN(4) {
	case 0:
		n.Quarantined = !n.Quarantined
	case 1:
		n.Expired = !n.Expired
	case 2:
		n.KeyExpiry = time.Date(2026, 12, 1+rng.IntN(3), 0, 0, 0, 0, time.UTC)
	default:
		if n.Posture == nil {
			n = modern(n)
		} else {
			n.Posture = nil
		}
	}
	f.nodes[n.ID] = n
}
