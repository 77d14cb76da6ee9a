package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// An access rule's srcPosture is checked when the node asks, recorded
// with the grant at approval, and enforced for the grant's whole life.
func TestGrantFollowsItsSourcePosture(t *testing.T) {
	e := newEnv(t, nil)
	h := e.enrollHosts()
	pol := strings.Replace(refPolicy, `"groups": {"group:dba": ["alice@example.com"]},`,
		`"groups": {"group:dba": ["alice@example.com"]}, "postures": {"posture:fw": ["firewall == true"]},`, 1)
	pol = strings.Replace(pol, `"approvers": ["group:dba"], "maxDuration": "1h"}`,
		`"approvers": ["group:dba"], "maxDuration": "1h", "srcPosture": ["posture:fw"]}`, 1)
	e.setPolicy(pol)
	alice := e.createToken("alice@example.com", wire.ScopeAccessApprove)
	report := func(fw bool) {
		t.Helper()
		if status, b := e.do(h.ci.client, http.MethodPost, wire.PathUpdate, agentHdr(),
			mustJSON(wire.UpdateRequest{Posture: &wire.Posture{OS: "linux", AgentVersion: "0.4.0", Firewall: &fw}})); status != http.StatusNoContent {
			t.Fatalf("posture update: %d %s", status, b)
		}
	}
	req := wire.NodeAccessRequest{To: "svc:db", Port: 5432, Duration: 30 * time.Minute, Reason: "INC-7"}

	// Without the posture the access rule does not apply to ci.
	e.requestAccess(h.ci, req, http.StatusForbidden)

	report(true)
	ar := e.requestAccess(h.ci, req, http.StatusCreated)
	e.as(alice, http.MethodPost, wire.PathAccess+"/"+ar.ID+"/approve", wire.DecideRequest{Reason: "ok"}, http.StatusOK, nil)
	stored, err := e.st.AccessRequest(context.Background(), ar.ID)
	if err != nil || !slices.Equal(stored.SrcPosture, []string{"posture:fw"}) {
		t.Fatalf("stored grant postures %q, %v", stored.SrcPosture, err)
	}
	db := e.follow(h.db)
	if p, ok := db.peer("ci"); !ok || !slices.Contains(p.Rules, "grant-"+ar.ID) {
		t.Fatalf("db does not admit ci by the grant: %+v", db.nm.Peers)
	}

	// The firewall goes off: the grant stops admitting ci at once.
	report(false)
	db.next()
	if p, ok := db.peer("ci"); ok && slices.Contains(p.Rules, "grant-"+ar.ID) {
		t.Fatalf("db still admits ci by the grant after its posture failed: %+v", p)
	}
	// Back on, before the expiry: the grant applies again.
	report(true)
	db.next()
	if p, ok := db.peer("ci"); !ok || !slices.Contains(p.Rules, "grant-"+ar.ID) {
		t.Fatalf("db does not admit ci again: %+v", db.nm.Peers)
	}
}

// A quarantined node may not ask for access at all.
func TestQuarantinedNodeCannotRequestAccess(t *testing.T) {
	e := newEnv(t, nil)
	h := e.enrollHosts()
	e.setPolicy(refPolicy)
	if _, err := e.st.SetQuarantine(context.Background(), h.ci.resp.Node.ID, true, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	e.requestAccess(h.ci, wire.NodeAccessRequest{To: "svc:staging", Duration: time.Hour, Reason: "deploy"}, http.StatusForbidden)
}
