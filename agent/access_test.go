package agent_test

import (
	"context"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/agent/internal/fakecoord"
	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/wire"
)

// serveLocalAPI serves h's agent on a unix socket, as latchd does, and
// returns a client for it.
func serveLocalAPI(t *testing.T, h *harness) *localapi.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "latchd.sock")
	ln, err := localapi.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: localapi.NewHandler(h.ag, nil)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return localapi.NewClient(sock)
}

func TestAccessRequestTravelsFromTheLocalAPIOverTheNodeIdentity(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	h := start(t, t.TempDir(), nil)
	c := serveLocalAPI(t, h)
	ctx := context.Background()

	// Not enrolled: nothing reaches the coordinator.
	_, err := c.RequestAccess(ctx, wire.NodeAccessRequest{To: "svc:db", Duration: time.Minute, Reason: "INC-42"})
	if err == nil || !strings.Contains(err.Error(), "not enrolled") {
		t.Errorf("request before enrolling: %v", err)
	}

	up := h.enroll(s)
	req := wire.NodeAccessRequest{To: "svc:db", Port: 5432, Duration: 30 * time.Minute, Reason: "INC-42"}
	ar, err := c.RequestAccess(ctx, req)
	if err != nil {
		t.Fatalf("RequestAccess: %v", err)
	}
	// The coordinator knows the source by the node's certificate alone.
	if ar.ID != "ar1" || ar.State != wire.AccessPending || ar.Src != up.NodeID || ar.SrcName != "host-a" || ar.To != "svc:db" || ar.Port != 5432 {
		t.Errorf("access request = %+v", ar)
	}
	if got := s.AccessRequests(); len(got) != 1 || got[0] != req {
		t.Errorf("coordinator received %+v, want [%+v]", got, req)
	}

	// An auto-approved request comes back approved, with its expiry.
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	s.OnAccess(func(src wire.Node, r wire.NodeAccessRequest) (wire.AccessRequest, int, string) {
		if r.To == "svc:secret" {
			return wire.AccessRequest{}, http.StatusForbidden, "no access rule lets host-a request svc:secret"
		}
		return wire.AccessRequest{ID: "ar2", Src: src.ID, To: r.To, State: wire.AccessApproved, Approver: "policy", Expires: expires}, 0, ""
	})
	ar, err = c.RequestAccess(ctx, wire.NodeAccessRequest{To: "svc:staging", Duration: time.Hour, Reason: "deploy"})
	if err != nil || ar.State != wire.AccessApproved || ar.Approver != "policy" || !ar.Expires.Equal(expires) {
		t.Errorf("auto-approved request = %+v, %v", ar, err)
	}

	// The coordinator's refusal reaches the CLI on one line.
	_, err = c.RequestAccess(ctx, wire.NodeAccessRequest{To: "svc:secret", Duration: time.Minute, Reason: "curious"})
	if err == nil || err.Error() != "requesting access: no access rule lets host-a request svc:secret" {
		t.Errorf("refused request: %v", err)
	}

	// Incomplete requests stop at the agent.
	for _, bad := range []wire.NodeAccessRequest{
		{Duration: time.Minute, Reason: "x"},
		{To: "svc:db", Reason: "x"},
		{To: "svc:db", Duration: time.Minute, Reason: " "},
	} {
		if _, err := c.RequestAccess(ctx, bad); err == nil || !strings.HasPrefix(err.Error(), "access request: ") {
			t.Errorf("RequestAccess(%+v) = %v, want a refusal", bad, err)
		}
	}
	if n := len(s.AccessRequests()); n != 3 {
		t.Errorf("coordinator received %d requests, want 3", n)
	}

	if err := c.Down(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c.RequestAccess(ctx, req)
	if err == nil || !strings.Contains(err.Error(), "latch is down") {
		t.Errorf("request while down: %v", err)
	}
}

// A grant or policy change that only changes which peers a rule admits
// reaches the coordinator as a delta upserting peers with new Rules; the
// packet filter must get the new sources at once, without a reconnect.
func TestPeerRuleChangeReconfiguresFilterSourcesAtOnce(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{})
	a := s.AddPeer("a", "198.18.0.2:51820")
	b := s.AddPeer("b", "198.18.0.3:51820")
	h := start(t, t.TempDir(), nil)
	up := h.upAsync(localapi.UpRequest{Coordinator: s.URL, AuthKey: s.AuthKey})
	st := nextStream(t, s)

	rule := wire.FilterRule{ID: "r-db/0", Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{{First: 5432, Last: 5432}}}
	nm := s.Netmap(st.Node)
	nm.Version = 10
	nm.Rules = []wire.FilterRule{rule}
	nm.Peers = []wire.Peer{{Node: a, Rules: []string{rule.ID}}, {Node: b}}
	sendNetmap(t, st, nm)
	if r := waitUp(t, up); r.err != nil {
		t.Fatalf("Up: %v", r.err)
	}

	grant := wire.FilterRule{ID: "grant-ar1", Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{{First: 5432, Last: 5432}},
		Expires: time.Now().Add(time.Hour).UTC().Truncate(time.Second)}
	steps := []struct {
		name  string
		delta *wire.Delta
		// want maps rule IDs to the sources the filter must hold.
		want map[string][]netip.Prefix
	}{
		{"start", nil, map[string][]netip.Prefix{rule.ID: a.Addresses}},
		{"a loses the rule", &wire.Delta{PrevVersion: 10, Version: 11, Upsert: []wire.Peer{{Node: a}}},
			map[string][]netip.Prefix{rule.ID: nil}},
		{"b gains the rule", &wire.Delta{PrevVersion: 11, Version: 12, Upsert: []wire.Peer{{Node: b, Rules: []string{rule.ID}}}},
			map[string][]netip.Prefix{rule.ID: b.Addresses}},
		{"a grant for a", &wire.Delta{PrevVersion: 12, Version: 13, RulesChanged: true, Rules: []wire.FilterRule{grant, rule},
			Upsert: []wire.Peer{{Node: a, Rules: []string{grant.ID}}}},
			map[string][]netip.Prefix{rule.ID: b.Addresses, grant.ID: a.Addresses}},
		{"the grant is revoked", &wire.Delta{PrevVersion: 13, Version: 14, RulesChanged: true, Rules: []wire.FilterRule{rule},
			Upsert: []wire.Peer{{Node: a}}},
			map[string][]netip.Prefix{rule.ID: b.Addresses}},
	}
	for i, step := range steps {
		if step.delta != nil {
			sendDelta(t, st, step.delta)
		}
		waitFor(t, "the config of step "+step.name, func() bool { return len(h.engine().Configs()) == i+1 })
		cfgs := h.engine().Configs()
		got := map[string][]netip.Prefix{}
		for _, r := range cfgs[i].Rules {
			got[r.ID] = r.Sources
		}
		if len(got) != len(step.want) {
			t.Errorf("%s: filter rules %v, want %v", step.name, got, step.want)
		}
		for id, want := range step.want {
			if src, ok := got[id]; !ok || !slices.Equal(src, want) {
				t.Errorf("%s: rule %s sources = %v (present %v), want %v", step.name, id, src, ok, want)
			}
		}
		if id := grant.ID; got[id] != nil {
			for _, r := range cfgs[i].Rules {
				if r.ID == id && !r.Expires.Equal(grant.Expires) {
					t.Errorf("%s: grant expiry %v, want %v", step.name, r.Expires, grant.Expires)
				}
			}
		}
	}
	if _, streams, _ := s.Counts(); streams != 1 {
		t.Errorf("%d streams, want 1 (no reconnect needed)", streams)
	}

	// Status says who may connect in.
	peers := h.status().Peers
	rules := map[string][]string{}
	for _, p := range peers {
		rules[p.Name] = p.Rules
	}
	if len(rules["a"]) != 0 || !slices.Equal(rules["b"], []string{rule.ID}) {
		t.Errorf("status peer rules = %v, want a: none, b: [%s]", rules, rule.ID)
	}
	if got := h.status().Rules; len(got) != 1 || got[0].ID != rule.ID {
		t.Errorf("status rules = %+v", got)
	}
}
