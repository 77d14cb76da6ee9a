package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// requestAccess asks for access from a, expecting status want.
func (e *env) requestAccess(a *agent, req wire.NodeAccessRequest, want int) wire.AccessRequest {
	e.t.Helper()
	status, b := e.do(a.client, http.MethodPost, wire.PathNodeAccess, agentHdr(), mustJSON(req))
	if status != want {
		e.t.Fatalf("access request %+v: %d %s, want %d", req, status, b, want)
	}
	var out wire.AccessRequest
	if status < 300 {
		if err := json.Unmarshal(b, &out); err != nil {
			e.t.Fatal(err)
		}
	} else {
		errorMessage(e.t, b)
	}
	return out
}

func TestGrantIsApprovedThenExpiresOnTheCoordinatorClock(t *testing.T) {
	e := newEnv(t, nil)
	h := e.enrollHosts()
	e.setPolicy(refPolicy)
	alice := e.createToken("alice@example.com", wire.ScopeAccessApprove)
	bob := e.createToken("bob@example.com", wire.ScopeAccessApprove)
	reader := e.createToken("alice@example.com", wire.ScopeNodesRead)
	ci := e.follow(h.ci)
	db := e.follow(h.db)
	web := e.follow(h.web)
	if len(ci.nm.Peers) != 0 {
		t.Fatalf("ci sees %v before any grant", ci.peers())
	}

	req := e.requestAccess(h.ci, wire.NodeAccessRequest{To: "svc:db", Port: 5432, Duration: 30 * time.Minute, Reason: "INC-42\nurgent"}, http.StatusCreated)
	if req.State != wire.AccessPending || req.Src != h.ci.resp.Node.ID || req.SrcName != "ci" || req.Reason != "INC-42 urgent" ||
		req.Approver != "" || !req.Expires.IsZero() {
		t.Fatalf("request %+v", req)
	}
	var pending []wire.AccessRequest
	e.as(alice, http.MethodGet, wire.PathAccess+"?state=pending", nil, http.StatusOK, &pending)
	if len(pending) != 1 || pending[0].ID != req.ID {
		t.Fatalf("pending %+v", pending)
	}
	path := wire.PathAccess + "/" + req.ID
	// Outside the scope, and not among the approvers: refused, nothing changes.
	e.as(reader, http.MethodPost, path+"/approve", nil, http.StatusForbidden, nil)
	e.as(bob, http.MethodPost, path+"/approve", wire.DecideRequest{Reason: "me"}, http.StatusForbidden, nil)
	e.as(e.token, http.MethodPost, path+"/approve", nil, http.StatusForbidden, nil) // bootstrap is no dba either

	before := e.clock.Now()
	var got wire.AccessRequest
	e.as(alice, http.MethodPost, path+"/approve", wire.DecideRequest{Reason: "go ahead"}, http.StatusOK, &got)
	if got.State != wire.AccessApproved || got.Approver != "alice@example.com" || got.DecisionReason != "go ahead" ||
		got.Expires.Sub(got.Decided) != 30*time.Minute || got.Decided.Before(before.Truncate(time.Microsecond)) {
		t.Fatalf("approved %+v", got)
	}
	// A decided request cannot be decided again.
	e.as(alice, http.MethodPost, path+"/approve", nil, http.StatusConflict, nil)
	e.as(alice, http.MethodPost, path+"/deny", nil, http.StatusConflict, nil)

	// The requesting node reads its own request's decision (latch access
	// request --wait); another node cannot read it.
	var mine wire.AccessRequest
	status, b := e.do(h.ci.client, http.MethodGet, wire.PathNodeAccess+"/"+req.ID, agentHdr(), nil)
	if status != http.StatusOK || json.Unmarshal(b, &mine) != nil || mine.State != wire.AccessApproved || mine.Approver != "alice@example.com" {
		t.Fatalf("own request: %d %s", status, b)
	}
	if status, b := e.do(h.web.client, http.MethodGet, wire.PathNodeAccess+"/"+req.ID, agentHdr(), nil); status != http.StatusNotFound {
		t.Fatalf("another node's request: %d %s, want 404", status, b)
	}
	if status, b := e.do(e.client, http.MethodGet, wire.PathNodeAccess+"/"+req.ID, agentHdr(), nil); status != http.StatusUnauthorized {
		t.Fatalf("no client certificate: %d %s, want 401", status, b)
	}

	// ci now sees db; db admits ci by the grant's rule until it expires.
	ci.next()
	if !slices.Equal(ci.peers(), []string{"db"}) {
		t.Fatalf("ci sees %v, want db", ci.peers())
	}
	db.next()
	r, ok := db.rule("grant-" + req.ID)
	if !ok || !r.Expires.Equal(got.Expires) || !slices.Equal(r.Ports, []wire.PortRange{{First: 5432, Last: 5432}}) ||
		!slices.Equal(r.Protocols, []wire.Proto{wire.ProtoTCP}) {
		t.Fatalf("db rules %+v: want the grant on 5432/tcp until %v", db.nm.Rules, got.Expires)
	}
	if p, ok := db.peer("ci"); !ok || !slices.Equal(p.Rules, []string{r.ID}) {
		t.Fatalf("db's entry for ci %+v", p)
	}
	var active []wire.AccessRequest
	e.as(alice, http.MethodGet, wire.PathAccess+"?state=active", nil, http.StatusOK, &active)
	if len(active) != 1 {
		t.Fatalf("active %+v", active)
	}

	// The coordinator's clock reaches the expiry: the grant leaves both maps.
	e.clock.Advance(got.Expires.Sub(e.clock.Now()))
	if d := ci.next(); len(d.Remove) != 1 || len(ci.nm.Peers) != 0 {
		t.Fatalf("ci after expiry %+v", d)
	}
	if d := db.next(); !slices.Equal(d.Remove, []wire.NodeID{h.ci.resp.Node.ID}) || !d.RulesChanged {
		t.Fatalf("db after expiry %+v", d)
	}
	if _, ok := db.rule(r.ID); ok {
		t.Fatal("db still has the expired grant's rule")
	}
	var expired []wire.AccessRequest
	e.as(alice, http.MethodGet, wire.PathAccess+"?state=expired", nil, http.StatusOK, &expired)
	if len(expired) != 1 || expired[0].ID != req.ID {
		t.Fatalf("expired %+v", expired)
	}
	e.as(alice, http.MethodPost, path+"/revoke", nil, http.StatusConflict, nil)
	// web heard nothing of any of it.
	select {
	case m := <-web.s.msgs:
		t.Fatalf("web got %+v", m)
	default:
	}
}

func TestAutoApprovedGrantIsActiveAtOnceAndRevocable(t *testing.T) {
	e := newEnv(t, nil)
	key := e.createKey(wire.CreateKeyRequest{Tags: []wire.Tag{"tag:staging"}})
	stg := e.enroll(key.Key, "staging")
	h := e.enrollHosts()
	e.setPolicy(refPolicy)
	alice := e.createToken("alice@example.com", wire.ScopeAccessApprove)
	s := e.follow(stg)
	got := e.requestAccess(h.ci, wire.NodeAccessRequest{To: "svc:staging", Duration: time.Hour, Reason: "deploy"}, http.StatusCreated)
	if got.State != wire.AccessApproved || got.Approver != "policy" || got.Expires.Sub(got.Decided) != time.Hour {
		t.Fatalf("auto-approved %+v", got)
	}
	s.next()
	if _, ok := s.rule("grant-" + got.ID); !ok || !slices.Equal(s.peers(), []string{"ci"}) {
		t.Fatalf("staging %+v", s.nm)
	}
	// Revocation takes the grant away at once; a second one is refused.
	var rev wire.AccessRequest
	e.as(alice, http.MethodPost, wire.PathAccess+"/"+got.ID+"/revoke", wire.DecideRequest{Reason: "done"}, http.StatusOK, &rev)
	if rev.State != wire.AccessRevoked {
		t.Fatalf("revoked %+v", rev)
	}
	if d := s.next(); !d.RulesChanged || len(s.nm.Peers) != 0 || len(s.nm.Rules) != 0 {
		t.Fatalf("staging after revoke %+v", d)
	}
	e.as(alice, http.MethodPost, wire.PathAccess+"/"+got.ID+"/revoke", nil, http.StatusConflict, nil)
}

func TestAccessRequestsThePolicyDoesNotAllowAreRefused(t *testing.T) {
	e := newEnv(t, nil)
	h := e.enrollHosts()
	ok := wire.NodeAccessRequest{To: "svc:db", Duration: time.Hour, Reason: "x"}
	e.requestAccess(h.ci, ok, http.StatusForbidden) // no policy yet
	e.setPolicy(refPolicy)
	tests := []struct {
		name string
		from *agent
		req  wire.NodeAccessRequest
		want int
	}{
		{"not an access source", h.web, ok, http.StatusForbidden},
		{"longer than maxDuration", h.ci, wire.NodeAccessRequest{To: "svc:db", Duration: 2 * time.Hour, Reason: "x"}, http.StatusForbidden},
		{"service the rule does not name", h.ci, wire.NodeAccessRequest{To: "svc:api", Duration: time.Hour, Reason: "x"}, http.StatusForbidden},
		{"unknown service", h.ci, wire.NodeAccessRequest{To: "svc:nope", Duration: time.Hour, Reason: "x"}, http.StatusBadRequest},
		{"port not of the service", h.ci, wire.NodeAccessRequest{To: "svc:db", Port: 22, Duration: time.Hour, Reason: "x"}, http.StatusBadRequest},
		{"not a service", h.ci, wire.NodeAccessRequest{To: "tag:db", Duration: time.Hour, Reason: "x"}, http.StatusBadRequest},
		{"no reason", h.ci, wire.NodeAccessRequest{To: "svc:db", Duration: time.Hour}, http.StatusBadRequest},
		{"no duration", h.ci, wire.NodeAccessRequest{To: "svc:db", Reason: "x"}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { e.requestAccess(tt.from, tt.req, tt.want) })
	}
	status, b := e.do(h.ci.client, http.MethodPost, wire.PathNodeAccess, agentHdr(), []byte(`{"to":"svc:db","bogus":1}`))
	if status != http.StatusBadRequest {
		t.Fatalf("unknown field: %d %s", status, b)
	}
	// Without a node certificate there is no source.
	status, _ = e.do(e.client, http.MethodPost, wire.PathNodeAccess, agentHdr(), mustJSON(ok))
	if status != http.StatusUnauthorized {
		t.Fatalf("no certificate: %d", status)
	}
	var all []wire.AccessRequest
	e.admin(http.MethodGet, wire.PathAccess, nil, http.StatusOK, &all)
	if len(all) != 0 {
		t.Fatalf("refused requests were stored: %+v", all)
	}
	e.admin(http.MethodGet, wire.PathAccess+"?state=bogus", nil, http.StatusBadRequest, nil)
}

func TestApprovalChecksTheCurrentPolicy(t *testing.T) {
	e := newEnv(t, nil)
	h := e.enrollHosts()
	e.setPolicy(refPolicy)
	alice := e.createToken("alice@example.com", wire.ScopeAccessApprove)
	req := e.requestAccess(h.ci, wire.NodeAccessRequest{To: "svc:db", Duration: time.Hour, Reason: "x"}, http.StatusCreated)
	denied := e.requestAccess(h.ci, wire.NodeAccessRequest{To: "svc:db", Duration: time.Hour, Reason: "y"}, http.StatusCreated)

	var d wire.AccessRequest
	e.as(alice, http.MethodPost, wire.PathAccess+"/"+denied.ID+"/deny", wire.DecideRequest{Reason: "no"}, http.StatusOK, &d)
	if d.State != wire.AccessDenied || d.Approver != "alice@example.com" || d.DecisionReason != "no" {
		t.Fatalf("denied %+v", d)
	}
	e.as(alice, http.MethodPost, wire.PathAccess+"/"+denied.ID+"/approve", nil, http.StatusConflict, nil)

	// The access rule goes away: the pending request can no longer be approved.
	e.setPolicy(strings.Replace(refPolicy, `{"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba"], "maxDuration": "1h"},`, "", 1))
	e.as(alice, http.MethodPost, wire.PathAccess+"/"+req.ID+"/approve", nil, http.StatusConflict, nil)
	var pending []wire.AccessRequest
	e.admin(http.MethodGet, wire.PathAccess+"?state=pending", nil, http.StatusOK, &pending)
	if len(pending) != 1 || pending[0].ID != req.ID {
		t.Fatalf("pending after the refused approval %+v", pending)
	}
	e.as(alice, http.MethodPost, wire.PathAccess+"/ffffffffffff/approve", nil, http.StatusNotFound, nil)
}
