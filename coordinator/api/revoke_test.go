package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

const meshPolicy = `{
  "tagOwners": {"tag:mesh": []},
  "rules": [{"src": ["tag:mesh"], "dst": ["tag:mesh:1-65535"]}],
}`

func TestRevokedNodeIsCutOffAndCannotReturn(t *testing.T) {
	e := newEnv(t, nil)
	e.setPolicy(meshPolicy)
	key := e.createKey(wire.CreateKeyRequest{Reusable: true, Tags: []wire.Tag{"tag:mesh"}})
	victim := e.enroll(key.Key, "victim")
	peer := e.enroll(key.Key, "peer")
	vs, _ := e.openStream(victim.client)
	vs.next()
	ps, _ := e.openStream(peer.client)
	first := ps.next()
	if first.Netmap == nil || !slices.ContainsFunc(first.Netmap.Peers, func(p wire.Peer) bool { return p.ID == victim.resp.Node.ID }) {
		t.Fatalf("peer's first netmap does not list the victim: %+v", first)
	}

	e.admin(http.MethodPost, wire.PathNodes+"/victim/revoke", nil, http.StatusNoContent, nil)

	// The victim's stream ends and its certificate no longer works.
	vs.waitClosed()
	status, b := e.do(victim.client, http.MethodGet, wire.PathStream, agentHdr(), nil)
	if status != http.StatusForbidden {
		t.Errorf("victim's stream after revocation: %d %s, want 403", status, b)
	}
	// The peer drops it with a delta.
	for {
		m := ps.next()
		if m.Delta != nil && slices.Contains(m.Delta.Remove, victim.resp.Node.ID) {
			break
		}
		if m.Netmap != nil && !slices.ContainsFunc(m.Netmap.Peers, func(p wire.Peer) bool { return p.ID == victim.resp.Node.ID }) {
			break
		}
	}
	// Its WireGuard key cannot enroll again, even with a good key and a
	// fresh certificate key.
	again := newAgent()
	again.wgKey = victim.wgKey
	status, b = e.do(e.client, http.MethodPost, wire.PathEnroll, agentHdr(), mustJSON(again.request(key.Key, "victim")))
	if status != http.StatusForbidden || !strings.Contains(errorMessage(t, b), "this WireGuard key was revoked") {
		t.Errorf("re-enroll with the revoked WireGuard key: %d %s, want 403", status, b)
	}
	if e.nodeCount() != 1 {
		t.Errorf("%d nodes, want only the peer", e.nodeCount())
	}
	// The revocation is audited.
	recs, err := e.st.AuditRecords(context.Background(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		if r.Action == "node.revoke" && r.Target == "node:"+string(victim.resp.Node.ID) {
			found = true
		}
	}
	if !found {
		t.Error("no node.revoke audit record")
	}
	e.admin(http.MethodPost, wire.PathNodes+"/victim/revoke", nil, http.StatusNotFound, nil)
}

func TestRevokeNeedsNodesWrite(t *testing.T) {
	e := newEnv(t, nil)
	key := e.createKey(wire.CreateKeyRequest{})
	e.enroll(key.Key, "n1")
	reader := e.createToken("reader@example.com", wire.ScopeNodesRead)
	e.as(reader, http.MethodPost, wire.PathNodes+"/n1/revoke", nil, http.StatusForbidden, nil)
	e.admin(http.MethodGet, wire.PathNodes+"/n1", nil, http.StatusOK, nil)
}
