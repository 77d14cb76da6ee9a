package compile

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

// Helpers to build policies in Go, without the parser.

func sel(name string) policy.Selector {
	switch {
	case strings.HasPrefix(name, "tag:"):
		return policy.Selector{Kind: policy.SelTag, Name: name}
	case strings.HasPrefix(name, "group:"):
		return policy.Selector{Kind: policy.SelGroup, Name: name}
	case strings.HasPrefix(name, "svc:"):
		return policy.Selector{Kind: policy.SelService, Name: name}
	case strings.HasPrefix(name, "node:"):
		return policy.Selector{Kind: policy.SelNode, Name: name}
	case strings.HasPrefix(name, "status:"):
		return policy.Selector{Kind: policy.SelQuarantined, Name: name}
	}
	return policy.Selector{Kind: policy.SelUser, Name: name}
}

func tcp(lo, hi uint16) policy.PortSpec {
	return policy.PortSpec{Proto: wire.ProtoTCP, Ports: wire.PortRange{First: lo, Last: hi}}
}

func udp(lo, hi uint16) policy.PortSpec {
	return policy.PortSpec{Proto: wire.ProtoUDP, Ports: wire.PortRange{First: lo, Last: hi}}
}

var icmp = policy.PortSpec{Proto: wire.ProtoICMP}

// svcTarget targets a service on its ports, as the parser fills it in.
func svcTarget(p *policy.Policy, name string) policy.Target {
	return policy.Target{Sel: sel(name), Ports: p.Services[name].Ports}
}

func tagTarget(tag string, specs ...policy.PortSpec) policy.Target {
	return policy.Target{Sel: sel(tag), Ports: specs}
}

func rule(id string, src []string, dst ...policy.Target) *policy.Rule {
	r := &policy.Rule{ID: id, Dst: dst}
	for _, s := range src {
		r.Src = append(r.Src, sel(s))
	}
	return r
}

// tid is the filter rule ID the compiler gives the target.
func tid(ruleID string, t policy.Target) string {
	return ruleID + "/" + hash(targetText(t.Sel.Name, validSpecs(t.Ports)))[:8]
}

func node(id, name, owner string, tags ...string) Node {
	n := Node{ID: wire.NodeID(id), Name: name, Owner: owner}
	for _, t := range tags {
		n.Tags = append(n.Tags, wire.Tag(t))
	}
	return n
}

func ids(s ...string) []wire.NodeID {
	var out []wire.NodeID
	for _, x := range s {
		out = append(out, wire.NodeID(x))
	}
	return out
}

// examplePolicy is web -> svc:api (8080/tcp), api -> svc:db (5432/tcp).
func examplePolicy() *policy.Policy {
	p := &policy.Policy{
		TagOwners: map[wire.Tag][]string{"tag:web": nil, "tag:api": nil, "tag:db": nil, "tag:ci": nil},
		Services: map[string]*policy.Service{
			"svc:api": {Name: "svc:api", Tags: []wire.Tag{"tag:api"}, Ports: []policy.PortSpec{tcp(8080, 8080)}},
			"svc:db":  {Name: "svc:db", Tags: []wire.Tag{"tag:db"}, Ports: []policy.PortSpec{tcp(5432, 5432)}},
		},
	}
	p.Rules = []*policy.Rule{
		rule("r-web", []string{"tag:web"}, svcTarget(p, "svc:api")),
		rule("r-api", []string{"svc:api"}, svcTarget(p, "svc:db")),
	}
	return p
}

func exampleNodes() []Node {
	return []Node{
		node("n-web", "web", "", "tag:web"),
		node("n-api", "api", "", "tag:api"),
		node("n-db", "db", "", "tag:db"),
		node("n-ci", "ci", "", "tag:ci"),
	}
}

func compileAll(p *policy.Policy, nodes []Node, gs []Grant) *Compiler {
	c := New(p)
	for _, n := range nodes {
		c.Upsert(n)
	}
	c.SetGrants(gs)
	return c
}

func TestNeedToKnowExample(t *testing.T) {
	p := examplePolicy()
	c := compileAll(p, exampleNodes(), nil)
	webRule := tid("r-web", svcTarget(p, "svc:api"))
	dbRule := tid("r-api", svcTarget(p, "svc:db"))
	tests := []struct {
		node string
		want View
	}{
		{"n-db", View{
			Peers: []PeerView{{ID: "n-api", Rules: []string{dbRule}}},
			Rules: []wire.FilterRule{{ID: dbRule, Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{{First: 5432, Last: 5432}}}},
		}},
		{"n-api", View{
			Peers: []PeerView{{ID: "n-db"}, {ID: "n-web", Rules: []string{webRule}}},
			Rules: []wire.FilterRule{{ID: webRule, Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{{First: 8080, Last: 8080}}}},
		}},
		{"n-web", View{Peers: []PeerView{{ID: "n-api"}}}},
		{"n-ci", View{}},
	}
	for _, tt := range tests {
		t.Run(tt.node, func(t *testing.T) {
			got, ok := c.View(wire.NodeID(tt.node))
			if !ok {
				t.Fatal("node unknown")
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("view (-want +got):\n%s", d)
			}
			var seen []wire.NodeID
			for _, p := range tt.want.Peers {
				seen = append(seen, p.ID)
			}
			if d := cmp.Diff(seen, c.SeenBy(wire.NodeID(tt.node))); d != "" {
				t.Errorf("SeenBy (-want +got):\n%s", d)
			}
		})
	}
	wantPairs := []Pair{
		{Src: "api", Dst: "db", Proto: "tcp", Ports: "5432"},
		{Src: "web", Dst: "api", Proto: "tcp", Ports: "8080"},
	}
	if d := cmp.Diff(wantPairs, c.Pairs()); d != "" {
		t.Errorf("Pairs (-want +got):\n%s", d)
	}
}

func TestEmptyPolicyAdmitsNothing(t *testing.T) {
	for _, p := range []*policy.Policy{nil, {}} {
		c := compileAll(p, exampleNodes(), []Grant{{ID: "g1", Src: "n-ci", Service: "svc:db", Ports: []policy.PortSpec{tcp(5432, 5432)}}})
		for _, n := range exampleNodes() {
			v, ok := c.View(n.ID)
			if !ok || v.Peers != nil || v.Rules != nil {
				t.Errorf("policy %v: view of %s = %+v, %v; want empty", p, n.ID, v, ok)
			}
		}
		if got := c.Pairs(); len(got) != 0 {
			t.Errorf("Pairs = %v, want none", got)
		}
	}
}

func TestSelectorsFollowIdentity(t *testing.T) {
	p := &policy.Policy{
		Groups: map[string][]string{"group:dba": {"alice@example.com", "bob@example.com"}},
		Services: map[string]*policy.Service{
			"svc:db": {Name: "svc:db", Tags: []wire.Tag{"tag:db", "tag:db2"}, Ports: []policy.PortSpec{tcp(5432, 5432)}},
		},
	}
	ssh := tagTarget("tag:db", tcp(22, 22))
	p.Rules = []*policy.Rule{
		rule("r-dba", []string{"group:dba"}, ssh),
		rule("r-carol", []string{"carol@example.com"}, ssh),
		rule("r-build", []string{"node:build-1"}, svcTarget(p, "svc:db")),
	}
	nodes := []Node{
		node("db1", "db1", "", "tag:db"),
		node("db2", "db2", "", "tag:db2"), // provides svc:db, is not tag:db
		node("alice-laptop", "alice-laptop", "alice@example.com"),
		node("alice-tagged", "alice-tagged", "alice@example.com", "tag:ci"), // tags replace the owner
		node("carol-laptop", "carol-laptop", "carol@example.com"),
		node("dave-laptop", "dave-laptop", "dave@example.com"),
		node("build-1", "build-1", "", "tag:ci"),
	}
	c := compileAll(p, nodes, nil)
	sshID, dbID := tid("r-dba", ssh), tid("r-build", svcTarget(p, "svc:db"))
	carolID := tid("r-carol", ssh)
	want := map[string][]PeerView{
		"db1": {
			{ID: "alice-laptop", Rules: []string{sshID}},
			{ID: "build-1", Rules: []string{dbID}},
			{ID: "carol-laptop", Rules: []string{carolID}},
		},
		"db2":          {{ID: "build-1", Rules: []string{dbID}}},
		"alice-laptop": {{ID: "db1"}},
		"alice-tagged": nil,
		"carol-laptop": {{ID: "db1"}},
		"dave-laptop":  nil,
		"build-1":      {{ID: "db1"}, {ID: "db2"}},
	}
	for id, peers := range want {
		v, _ := c.View(wire.NodeID(id))
		if d := cmp.Diff(peers, v.Peers); d != "" {
			t.Errorf("%s peers (-want +got):\n%s", id, d)
		}
	}
	v, _ := c.View("db1")
	var got []string
	for _, r := range v.Rules {
		got = append(got, r.ID)
	}
	wantRules := []string{carolID, sshID, dbID}
	slices.Sort(wantRules)
	if d := cmp.Diff(wantRules, got); d != "" {
		t.Errorf("db1 rules (-want +got):\n%s", d)
	}
}

func TestRenderNeverWidens(t *testing.T) {
	icmpProtos := []wire.Proto{wire.ProtoICMP, wire.ProtoICMPv6}
	pr := func(lo, hi uint16) wire.PortRange { return wire.PortRange{First: lo, Last: hi} }
	tests := []struct {
		name  string
		specs []policy.PortSpec
		want  []wire.FilterRule
	}{
		{"one tcp port", []policy.PortSpec{tcp(22, 22)},
			[]wire.FilterRule{{ID: "x", Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{pr(22, 22)}}}},
		{"bare port is tcp and udp", []policy.PortSpec{tcp(22, 25), udp(22, 25)},
			[]wire.FilterRule{{ID: "x", Protocols: []wire.Proto{wire.ProtoTCP, wire.ProtoUDP}, Ports: []wire.PortRange{pr(22, 25)}}}},
		{"ranges merge", []policy.PortSpec{tcp(5432, 5432), tcp(22, 22), tcp(23, 30), tcp(25, 26)},
			[]wire.FilterRule{{ID: "x", Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{pr(22, 30), pr(5432, 5432)}}}},
		{"icmp only has no ports", []policy.PortSpec{icmp},
			[]wire.FilterRule{{ID: "x", Protocols: icmpProtos}}},
		{"icmp rides along", []policy.PortSpec{udp(53, 53), icmp},
			[]wire.FilterRule{{ID: "x", Protocols: []wire.Proto{wire.ProtoICMP, wire.ProtoUDP, wire.ProtoICMPv6}, Ports: []wire.PortRange{pr(53, 53)}}}},
		{"different ports per protocol split", []policy.PortSpec{tcp(22, 22), udp(53, 53), icmp},
			[]wire.FilterRule{
				{ID: "x/tcp", Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{pr(22, 22)}},
				{ID: "x/udp", Protocols: []wire.Proto{wire.ProtoUDP}, Ports: []wire.PortRange{pr(53, 53)}},
				{ID: "x/icmp", Protocols: icmpProtos},
			}},
		{"invalid specs dropped", []policy.PortSpec{tcp(0, 10), tcp(30, 20), {Proto: 99}, {Proto: wire.ProtoICMPv6}, udp(7, 7)},
			[]wire.FilterRule{{ID: "x", Protocols: []wire.Proto{wire.ProtoUDP}, Ports: []wire.PortRange{pr(7, 7)}}}},
		{"nothing valid, nothing", []policy.PortSpec{tcp(0, 0)}, nil},
		{"no specs, nothing", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, render("x", tt.specs, time.Time{})); d != "" {
				t.Errorf("render (-want +got):\n%s", d)
			}
		})
	}
}

func TestTargetWithoutPortsRelatesNobody(t *testing.T) {
	p := &policy.Policy{Rules: []*policy.Rule{
		rule("r-1", []string{"tag:a"}, tagTarget("tag:b"), tagTarget("tag:c", tcp(0, 0))),
	}}
	c := compileAll(p, []Node{node("a", "a", "", "tag:a"), node("b", "b", "", "tag:b"), node("c", "c", "", "tag:c")}, nil)
	for _, id := range ids("a", "b", "c") {
		if v, _ := c.View(id); v.Peers != nil || v.Rules != nil {
			t.Errorf("view of %s = %+v, want empty", id, v)
		}
	}
}

func TestRuleIDsUniqueAndStable(t *testing.T) {
	mk := func(extra bool) *policy.Policy {
		p := &policy.Policy{}
		p.Rules = []*policy.Rule{
			rule("r-same", []string{"tag:a"}, tagTarget("tag:b", tcp(22, 22)), tagTarget("tag:b", tcp(22, 22)), tagTarget("tag:b", tcp(80, 80))),
			rule("r-same", []string{"tag:a"}, tagTarget("tag:b", tcp(22, 22))), // an identical rule twice
			rule("", []string{"tag:c"}, tagTarget("tag:b", icmp)),
			rule("grant-x", []string{"tag:c"}, tagTarget("tag:b", udp(53, 53))),
		}
		if extra {
			p.Rules = append([]*policy.Rule{rule("r-new", []string{"tag:y"}, tagTarget("tag:z", tcp(1, 2)))}, p.Rules...)
		}
		return p
	}
	nodes := []Node{node("a", "a", "", "tag:a"), node("b", "b", "", "tag:b"), node("c", "c", "", "tag:c")}
	c := compileAll(mk(false), nodes, nil)
	v, _ := c.View("b")
	var got []string
	for _, r := range v.Rules {
		got = append(got, r.ID)
	}
	if len(got) != 5 {
		t.Errorf("rule IDs %v: want 5 (duplicate target merged, duplicate rule kept apart)", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i-1] >= got[i] {
			t.Errorf("rule IDs %v not sorted and unique", got)
		}
	}
	for _, id := range got {
		if strings.HasPrefix(id, grantPrefix) {
			t.Errorf("policy rule ID %q in the grant namespace", id)
		}
	}
	// An unrelated rule added in front leaves every ID as it was.
	changed := c.SetPolicy(mk(true))
	v2, _ := c.View("b")
	if d := cmp.Diff(v, v2); d != "" {
		t.Errorf("view of b changed by an unrelated rule (-old +new):\n%s", d)
	}
	if slices.Contains(changed, "b") || slices.Contains(changed, "a") || slices.Contains(changed, "c") {
		t.Errorf("SetPolicy reported %v; no existing view changed", changed)
	}
}

func TestGrantOpensServiceToSource(t *testing.T) {
	p := examplePolicy()
	exp := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	c := compileAll(p, exampleNodes(), nil)
	changed := c.SetGrants([]Grant{{ID: "g1", Src: "n-ci", Service: "svc:db", Ports: []policy.PortSpec{tcp(5432, 5432)}, Expires: exp}})
	if d := cmp.Diff(ids("n-ci", "n-db"), changed); d != "" {
		t.Errorf("SetGrants changed (-want +got):\n%s", d)
	}
	dbRule := tid("r-api", svcTarget(p, "svc:db"))
	want := View{
		Peers: []PeerView{{ID: "n-api", Rules: []string{dbRule}}, {ID: "n-ci", Rules: []string{"grant-g1"}}},
		Rules: []wire.FilterRule{
			{ID: "grant-g1", Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{{First: 5432, Last: 5432}}, Expires: exp},
			{ID: dbRule, Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{{First: 5432, Last: 5432}}},
		},
	}
	if v, _ := c.View("n-db"); !cmp.Equal(want, v) {
		t.Errorf("db view (-want +got):\n%s", cmp.Diff(want, v))
	}
	if v, _ := c.View("n-ci"); !cmp.Equal(View{Peers: []PeerView{{ID: "n-db"}}}, v) {
		t.Errorf("ci view = %+v, want db reachable", v)
	}
	if pv, ok := c.Peer("n-db", "n-ci"); !ok || !slices.Equal(pv.Rules, []string{"grant-g1"}) {
		t.Errorf("Peer(db, ci) = %+v, %v", pv, ok)
	}
	// Grants are not policy pairs.
	if got := len(c.Pairs()); got != 2 {
		t.Errorf("Pairs has %d entries, want 2", got)
	}
	// The same grants again change nothing; dropping them changes both.
	if got := c.SetGrants([]Grant{{ID: "g1", Src: "n-ci", Service: "svc:db", Ports: []policy.PortSpec{tcp(5432, 5432)}, Expires: exp}}); got != nil {
		t.Errorf("same grants changed %v", got)
	}
	if d := cmp.Diff(ids("n-ci", "n-db"), c.SetGrants(nil)); d != "" {
		t.Errorf("revoke changed (-want +got):\n%s", d)
	}
}

func TestJoinAndLeaveReportAffectedNodes(t *testing.T) {
	c := compileAll(examplePolicy(), exampleNodes(), nil)
	tests := []struct {
		name string
		op   func() []wire.NodeID
		want []wire.NodeID
	}{
		{"second api joins", func() []wire.NodeID { return c.Upsert(node("n-api2", "api2", "", "tag:api")) }, ids("n-api2", "n-db", "n-web")},
		{"unchanged upsert", func() []wire.NodeID { return c.Upsert(node("n-api2", "api2", "", "tag:api")) }, nil},
		{"address change", func() []wire.NodeID {
			n := node("n-api2", "api2", "", "tag:api")
			n.Addresses = nil
			return c.Upsert(n)
		}, nil},
		{"retag to ci", func() []wire.NodeID { return c.Upsert(node("n-api2", "api2", "", "tag:ci")) }, ids("n-api2", "n-db", "n-web")},
		{"ci joins", func() []wire.NodeID { return c.Upsert(node("n-ci2", "ci2", "", "tag:ci")) }, ids("n-ci2")},
		{"web leaves", func() []wire.NodeID { return c.Remove("n-web") }, ids("n-api")},
		{"unknown leaves", func() []wire.NodeID { return c.Remove("n-nope") }, nil},
	}
	for _, tt := range tests {
		if d := cmp.Diff(tt.want, tt.op()); d != "" {
			t.Errorf("%s: changed (-want +got):\n%s", tt.name, d)
		}
	}
	if _, ok := c.View("n-web"); ok {
		t.Error("removed node still has a view")
	}
}

// TestGroupChangeRelistsPeers changes only a group's members: the rule
// keeps its ID and the peer stays visible, but its rule list changes.
func TestGroupChangeRelistsPeers(t *testing.T) {
	mk := func(members ...string) *policy.Policy {
		return &policy.Policy{
			Groups: map[string][]string{"group:dba": members},
			Rules: []*policy.Rule{
				rule("r-dba", []string{"group:dba"}, tagTarget("tag:db", tcp(22, 22))),
				rule("r-all", []string{"alice@example.com", "bob@example.com"}, tagTarget("tag:db", icmp)),
			},
		}
	}
	nodes := []Node{node("db", "db", "", "tag:db"), node("alice", "alice", "alice@example.com"), node("bob", "bob", "bob@example.com")}
	c := compileAll(mk("alice@example.com"), nodes, nil)
	// bob could reach db before; only db's entry for bob changes.
	if d := cmp.Diff(ids("db"), c.SetPolicy(mk("alice@example.com", "bob@example.com"))); d != "" {
		t.Errorf("changed (-want +got):\n%s", d)
	}
	pv, _ := c.Peer("db", "bob")
	if len(pv.Rules) != 2 {
		t.Errorf("bob at db = %+v, want both rules", pv)
	}
}

// TestGrantMovesToAnotherSource moves a grant between two nodes the
// provider sees anyway: only the rule lists change.
func TestGrantMovesToAnotherSource(t *testing.T) {
	p := &policy.Policy{
		Services: map[string]*policy.Service{"svc:db": {Name: "svc:db", Tags: []wire.Tag{"tag:db"}, Ports: []policy.PortSpec{tcp(5432, 5432)}}},
		Rules:    []*policy.Rule{rule("r-ping", []string{"tag:ci"}, tagTarget("tag:db", icmp))},
	}
	nodes := []Node{node("db", "db", "", "tag:db"), node("ci1", "ci1", "", "tag:ci"), node("ci2", "ci2", "", "tag:ci")}
	g := Grant{ID: "g", Src: "ci1", Service: "svc:db", Ports: []policy.PortSpec{tcp(5432, 5432)}}
	c := compileAll(p, nodes, []Grant{g})
	g.Src = "ci2"
	if d := cmp.Diff(ids("db"), c.SetGrants([]Grant{g})); d != "" {
		t.Errorf("changed (-want +got):\n%s", d)
	}
	if pv, _ := c.Peer("db", "ci2"); !slices.Contains(pv.Rules, "grant-g") {
		t.Errorf("ci2 at db = %+v, want the grant", pv)
	}
}

func TestDiffPairs(t *testing.T) {
	a := Pair{Src: "api", Dst: "db", Proto: "tcp", Ports: "5432"}
	b := Pair{Src: "web", Dst: "api", Proto: "tcp", Ports: "8080"}
	c := Pair{Src: "web", Dst: "api", Proto: "tcp", Ports: "10"}
	d := Pair{Src: "web", Dst: "api", Proto: "icmp"}
	gained, lost := DiffPairs([]Pair{a, b}, []Pair{b, d, c, c})
	if diff := cmp.Diff([]Pair{d, c}, gained); diff != "" {
		t.Errorf("gained (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Pair{a}, lost); diff != "" {
		t.Errorf("lost (-want +got):\n%s", diff)
	}
	gained, lost = DiffPairs(nil, nil)
	if gained == nil || lost == nil || len(gained)+len(lost) != 0 {
		t.Errorf("DiffPairs(nil, nil) = %#v, %#v; want empty, non-nil", gained, lost)
	}
}

func TestPairsMergeRanges(t *testing.T) {
	p := &policy.Policy{Rules: []*policy.Rule{
		rule("r-1", []string{"tag:a"}, tagTarget("tag:b", tcp(22, 22), udp(53, 53), icmp)),
		rule("r-2", []string{"tag:a"}, tagTarget("tag:b", tcp(23, 30), tcp(8000, 8100), icmp)),
		rule("r-3", []string{"tag:b"}, tagTarget("tag:b", tcp(1, 1))), // b itself: a node never pairs with itself
	}}
	c := compileAll(p, []Node{node("1", "a", "", "tag:a"), node("2", "b", "", "tag:b")}, nil)
	want := []Pair{
		{Src: "a", Dst: "b", Proto: "icmp"},
		{Src: "a", Dst: "b", Proto: "tcp", Ports: "22-30"},
		{Src: "a", Dst: "b", Proto: "tcp", Ports: "8000-8100"},
		{Src: "a", Dst: "b", Proto: "udp", Ports: "53"},
	}
	if d := cmp.Diff(want, c.Pairs()); d != "" {
		t.Errorf("Pairs (-want +got):\n%s", d)
	}
	if !slices.IsSortedFunc(want, ComparePairs) {
		t.Error("ComparePairs disagrees with Pairs' order")
	}
}

func TestViewIsACopy(t *testing.T) {
	p := examplePolicy()
	c := compileAll(p, exampleNodes(), nil)
	v, _ := c.View("n-db")
	v.Rules[0].Ports[0].First = 1
	v.Rules[0].Protocols[0] = wire.ProtoUDP
	v.Peers[0].Rules = append(v.Peers[0].Rules, "extra")
	v2, _ := c.View("n-db")
	if v2.Rules[0].Ports[0].First != 5432 || v2.Rules[0].Protocols[0] != wire.ProtoTCP || len(v2.Peers[0].Rules) != 1 {
		t.Errorf("changing a returned view changed the compiler: %+v", v2)
	}
}

func ExampleDiffPairs() {
	old := []Pair{{Src: "api", Dst: "db", Proto: "tcp", Ports: "5432"}}
	gained, lost := DiffPairs(old, nil)
	fmt.Println(len(gained), lost)
	// Output: 0 [{api db tcp 5432}]
}

// TestParsedPolicy runs the example through the real parser.
func TestParsedPolicy(t *testing.T) {
	p, err := policy.Parse([]byte(`{
		// web -> api -> db; ci gets nothing by default.
		"tagOwners": {"tag:web": [], "tag:api": [], "tag:db": [], "tag:ci": []},
		"services": {
			"svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]},
			"svc:db":  {"tags": ["tag:db"],  "ports": ["5432/tcp"]},
		},
		"rules": [
			{"src": ["tag:web"], "dst": ["svc:api"]},
			{"src": ["svc:api"], "dst": ["svc:db", "tag:db:icmp"]},
		],
	}`))
	if err != nil {
		t.Fatal(err)
	}
	c := compileAll(p, exampleNodes(), nil)
	db, _ := c.View("n-db")
	if len(db.Peers) != 1 || db.Peers[0].ID != "n-api" || len(db.Peers[0].Rules) != 2 || len(db.Rules) != 2 {
		t.Errorf("db view = %+v; want api alone, with the 5432/tcp and ICMP rules", db)
	}
	for _, r := range db.Rules {
		if !strings.HasPrefix(r.ID, p.Rules[1].ID+"/") {
			t.Errorf("rule %s does not name its policy rule %s", r.ID, p.Rules[1].ID)
		}
	}
	if ci, _ := c.View("n-ci"); ci.Peers != nil || ci.Rules != nil {
		t.Errorf("ci view = %+v, want nothing", ci)
	}
	want := []Pair{
		{Src: "api", Dst: "db", Proto: "icmp"},
		{Src: "api", Dst: "db", Proto: "tcp", Ports: "5432"},
		{Src: "web", Dst: "api", Proto: "tcp", Ports: "8080"},
	}
	if d := cmp.Diff(want, c.Pairs()); d != "" {
		t.Errorf("Pairs (-want +got):\n%s", d)
	}
}
