package compile

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

// quarantinePolicy: web -> svc:api, quarantined nodes -> svc:patch (the
// remediation path), admin -> status:quarantined:22/tcp.
func quarantinePolicy() *policy.Policy {
	p := &policy.Policy{
		Services: map[string]*policy.Service{
			"svc:api":   {Name: "svc:api", Tags: []wire.Tag{"tag:api"}, Ports: []policy.PortSpec{tcp(8080, 8080)}},
			"svc:patch": {Name: "svc:patch", Tags: []wire.Tag{"tag:patch"}, Ports: []policy.PortSpec{tcp(443, 443)}},
		},
	}
	p.Rules = []*policy.Rule{
		rule("r-web", []string{"tag:web", "node:web"}, svcTarget(p, "svc:api")),
		rule("r-fix", []string{"status:quarantined"}, svcTarget(p, "svc:patch")),
		rule("r-adm", []string{"tag:admin"}, tagTarget("status:quarantined", tcp(22, 22))),
	}
	return p
}

func quarantineNodes() []Node {
	return []Node{
		node("n-web", "web", "", "tag:web"),
		node("n-api", "api", "", "tag:api"),
		node("n-patch", "patch", "", "tag:patch"),
		node("n-admin", "admin", "", "tag:admin"),
	}
}

func peerIDs(v View) []wire.NodeID {
	var out []wire.NodeID
	for _, p := range v.Peers {
		out = append(out, p.ID)
	}
	return out
}

func TestQuarantinedNodeKeepsOnlyRemediation(t *testing.T) {
	p := quarantinePolicy()
	nodes := quarantineNodes()
	c := compileAll(p, nodes, nil)
	web := nodes[0]
	fix := tid("r-fix", svcTarget(p, "svc:patch"))
	adm := tid("r-adm", tagTarget("status:quarantined", tcp(22, 22)))

	web.Quarantined = true
	changed := c.Upsert(web)
	if d := cmp.Diff(ids("n-admin", "n-api", "n-patch", "n-web"), changed); d != "" {
		t.Errorf("quarantine changed (-want +got):\n%s", d)
	}
	// web keeps only the remediation path and the admin's way in; neither
	// its tag nor its name selects it any more.
	if v, _ := c.View("n-web"); !cmp.Equal(peerIDs(v), ids("n-admin", "n-patch")) || len(v.Rules) != 1 || v.Rules[0].ID != adm {
		t.Errorf("quarantined web view = %+v", v)
	}
	if v, _ := c.View("n-api"); len(v.Peers) != 0 || len(v.Rules) == 0 {
		t.Errorf("api still sees quarantined web: %+v", v)
	}
	if pv, ok := c.Peer("n-patch", "n-web"); !ok || !slices.Equal(pv.Rules, []string{fix}) {
		t.Errorf("Peer(patch, web) = %+v, %v; want the remediation rule", pv, ok)
	}
	if pv, ok := c.Peer("n-web", "n-admin"); !ok || !slices.Equal(pv.Rules, []string{adm}) {
		t.Errorf("Peer(web, admin) = %+v, %v; want the admin rule", pv, ok)
	}
	wantPairs := []Pair{
		{Src: "admin", Dst: "web", Proto: "tcp", Ports: "22"},
		{Src: "web", Dst: "patch", Proto: "tcp", Ports: "443"},
	}
	if d := cmp.Diff(wantPairs, c.Pairs()); d != "" {
		t.Errorf("Pairs (-want +got):\n%s", d)
	}

	// Unquarantine restores exactly the first views.
	web.Quarantined = false
	if d := cmp.Diff(ids("n-admin", "n-api", "n-patch", "n-web"), c.Upsert(web)); d != "" {
		t.Errorf("unquarantine changed (-want +got):\n%s", d)
	}
	if d := cmp.Diff(allViews(compileAll(p, nodes, nil), nodes), allViews(c, nodes)); d != "" {
		t.Errorf("views after unquarantine (-fresh +got):\n%s", d)
	}
}

func TestQuarantinedNodeProvidesNothingAndGrantsGoInert(t *testing.T) {
	p := quarantinePolicy()
	nodes := quarantineNodes()
	exp := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	// admin holds a grant to svc:api.
	c := compileAll(p, nodes, []Grant{{ID: "g1", Src: "n-admin", Service: "svc:api", Ports: []policy.PortSpec{tcp(8080, 8080)}, Expires: exp}})
	if pv, ok := c.Peer("n-api", "n-admin"); !ok || !slices.Equal(pv.Rules, []string{"grant-g1"}) {
		t.Fatalf("Peer(api, admin) = %+v, %v before quarantine", pv, ok)
	}

	api := nodes[1]
	api.Quarantined = true
	c.Upsert(api)
	if _, ok := c.Peer("n-web", "n-api"); ok {
		t.Error("web still sees the quarantined api")
	}
	// Only the quarantine rules remain at api: no service, so no grant.
	adm := tid("r-adm", tagTarget("status:quarantined", tcp(22, 22)))
	if v, _ := c.View("n-api"); !cmp.Equal(peerIDs(v), ids("n-admin", "n-patch")) || len(v.Rules) != 1 || v.Rules[0].ID != adm {
		t.Errorf("quarantined api view = %+v, want only the quarantine rules", v)
	}
	api.Quarantined = false
	c.Upsert(api)

	admin := nodes[3]
	admin.Quarantined = true
	changed := c.Upsert(admin)
	if !slices.Contains(changed, "n-api") {
		t.Errorf("quarantining a grant's source did not change the service node: %v", changed)
	}
	if pv, ok := c.Peer("n-api", "n-admin"); ok {
		t.Errorf("grant of a quarantined source still admits it: %+v", pv)
	}
	if v, _ := c.View("n-admin"); slices.Contains(peerIDs(v), "n-api") {
		t.Errorf("quarantined grant source still sees the service: %+v", v)
	}
}

// posturePolicy: tag:web reaches svc:api only with posture:modern.
func posturePolicy() *policy.Policy {
	p := &policy.Policy{
		Services: map[string]*policy.Service{
			"svc:api": {Name: "svc:api", Tags: []wire.Tag{"tag:api"}, Ports: []policy.PortSpec{tcp(8080, 8080)}},
		},
		Postures: map[string]*policy.Posture{
			"posture:modern": {Name: "posture:modern", Conds: []policy.Condition{
				{Attr: "os", Op: policy.OpEq, Value: "linux"},
				{Attr: "agent_version", Op: policy.OpGe, Value: "0.4"},
			}},
			"posture:fw": {Name: "posture:fw", Conds: []policy.Condition{{Attr: "firewall", Op: policy.OpEq, Value: "true"}}},
		},
	}
	r := rule("r-web", []string{"tag:web"}, svcTarget(p, "svc:api"))
	r.SrcPosture = []string{"posture:modern"}
	p.Rules = []*policy.Rule{r}
	return p
}

func TestPostureGatesRuleSources(t *testing.T) {
	p := posturePolicy()
	tests := []struct {
		name    string
		posture map[string]string
		admit   bool
	}{
		{"nothing reported", nil, false},
		{"satisfied", map[string]string{"os": "linux", "agent_version": "0.4.0"}, true},
		{"newer, numerically", map[string]string{"os": "linux", "agent_version": "0.10"}, true},
		{"too old", map[string]string{"os": "linux", "agent_version": "0.3.9"}, false},
		{"wrong os", map[string]string{"os": "darwin", "agent_version": "1.0"}, false},
		{"version missing", map[string]string{"os": "linux"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			web := node("n-web", "web", "", "tag:web")
			web.Posture = tt.posture
			c := compileAll(p, []Node{web, node("n-api", "api", "", "tag:api")}, nil)
			_, sees := c.Peer("n-api", "n-web")
			if sees != tt.admit {
				t.Errorf("api sees web = %v, want %v", sees, tt.admit)
			}
			if got := len(c.Pairs()) > 0; got != tt.admit {
				t.Errorf("pairs present = %v, want %v", got, tt.admit)
			}
		})
	}
}

func TestPostureChangeIsIncremental(t *testing.T) {
	p := posturePolicy()
	web := node("n-web", "web", "", "tag:web")
	nodes := []Node{web, node("n-api", "api", "", "tag:api"), node("n-other", "other", "", "tag:other")}
	c := compileAll(p, nodes, nil)

	web.Posture = map[string]string{"os": "linux", "agent_version": "0.4.0"}
	if d := cmp.Diff(ids("n-api", "n-web"), c.Upsert(web)); d != "" {
		t.Errorf("posture satisfied: changed (-want +got):\n%s", d)
	}
	// Another value that satisfies the same postures changes no view.
	web.Posture = map[string]string{"os": "linux", "agent_version": "0.5", "hostname": "w1"}
	if got := c.Upsert(web); got != nil {
		t.Errorf("posture change with the same standing changed %v", got)
	}
	web.Posture = map[string]string{"os": "linux", "agent_version": "0.3"}
	if d := cmp.Diff(ids("n-api", "n-web"), c.Upsert(web)); d != "" {
		t.Errorf("posture lost: changed (-want +got):\n%s", d)
	}
	if _, ok := c.Peer("n-api", "n-web"); ok {
		t.Error("api still sees web after its posture fell short")
	}
}

// TestGrantFollowsSourcePosture: a grant with SrcPosture admits its
// source only while the source satisfies it, and a change reports the
// service node even when it keeps seeing the source through a rule.
func TestGrantFollowsSourcePosture(t *testing.T) {
	p := posturePolicy()
	// api may reach ci on 22, so api sees ci whatever the grant does.
	p.Rules = append(p.Rules, rule("r-api", []string{"tag:api"}, tagTarget("tag:ci", tcp(22, 22))))
	ci := node("n-ci", "ci", "", "tag:ci")
	ci.Posture = map[string]string{"firewall": "true"}
	nodes := []Node{ci, node("n-api", "api", "", "tag:api")}
	exp := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	g := Grant{ID: "g1", Src: "n-ci", Service: "svc:api", Ports: []policy.PortSpec{tcp(8080, 8080)}, Expires: exp, SrcPosture: []string{"posture:fw"}}
	c := compileAll(p, nodes, []Grant{g})
	if pv, ok := c.Peer("n-api", "n-ci"); !ok || !slices.Equal(pv.Rules, []string{"grant-g1"}) {
		t.Fatalf("Peer(api, ci) = %+v, %v; want the grant", pv, ok)
	}
	ci.Posture = map[string]string{"firewall": "false"}
	if d := cmp.Diff(ids("n-api"), c.Upsert(ci)); d != "" {
		t.Errorf("posture lost: changed (-want +got):\n%s", d)
	}
	if pv, ok := c.Peer("n-api", "n-ci"); !ok || len(pv.Rules) != 0 {
		t.Errorf("Peer(api, ci) = %+v, %v; want visible through r-api, no grant", pv, ok)
	}
	ci.Posture = map[string]string{"firewall": "true"}
	if d := cmp.Diff(ids("n-api"), c.Upsert(ci)); d != "" {
		t.Errorf("posture regained: changed (-want +got):\n%s", d)
	}
	// A posture the policy does not define is never satisfied.
	g.SrcPosture = []string{"posture:nope"}
	c.SetGrants([]Grant{g})
	if pv, _ := c.Peer("n-api", "n-ci"); len(pv.Rules) != 0 {
		t.Errorf("grant with an undefined posture admits its source: %+v", pv)
	}
}

// TestDiffPolicyCountsPostureAndQuarantine: the "pairs gained and lost"
// preview of a policy change sees posture gates and quarantine rules on
// the current inventory.
func TestDiffPolicyCountsPostureAndQuarantine(t *testing.T) {
	open := posturePolicy()
	open.Rules[0].SrcPosture = nil // web -> svc:api, ungated
	web := node("n-web", "web", "", "tag:web")
	web.Posture = map[string]string{"os": "linux", "agent_version": "0.3"} // fails posture:modern
	web2 := node("n-web2", "web2", "", "tag:web")
	web2.Posture = map[string]string{"os": "linux", "agent_version": "0.4.1"}
	nodes := []Node{web, web2, node("n-api", "api", "", "tag:api")}
	c := compileAll(open, nodes, nil)

	gained, lost := c.DiffPolicy(posturePolicy())
	if d := cmp.Diff([]Pair{}, gained); d != "" {
		t.Errorf("gating: gained (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]Pair{{Src: "web", Dst: "api", Proto: "tcp", Ports: "8080"}}, lost); d != "" {
		t.Errorf("gating: lost (-want +got):\n%s", d)
	}

	// A quarantined api: no pair reaches it any more; a posture-gated
	// rule toward status:quarantined gains only the source that
	// satisfies the posture.
	api := nodes[2]
	api.Quarantined = true
	c.Upsert(api)
	if got := c.Pairs(); len(got) != 0 {
		t.Errorf("pairs toward a quarantined node: %v", got)
	}
	q := posturePolicy()
	q.Rules = append(q.Rules, rule("r-q", []string{"tag:web"}, tagTarget("status:quarantined", tcp(22, 22))))
	q.Rules[1].SrcPosture = []string{"posture:modern"}
	gained, lost = c.DiffPolicy(q)
	if d := cmp.Diff([]Pair{{Src: "web2", Dst: "api", Proto: "tcp", Ports: "22"}}, gained); d != "" {
		t.Errorf("quarantine rule: gained (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]Pair{}, lost); d != "" {
		t.Errorf("quarantine rule: lost (-want +got):\n%s", d)
	}
}
