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

func TestEphemeralNodeLeavesAtOnceAndEveryPeerIsTold(t *testing.T) {
	e := newEnv(t, nil)
	e.setPolicy(meshPolicy)
	eph := e.createKey(wire.CreateKeyRequest{Reusable: true, Ephemeral: true, Tags: []wire.Tag{"tag:mesh"}})
	perm := e.createKey(wire.CreateKeyRequest{Reusable: true, Tags: []wire.Tag{"tag:mesh"}})
	runner := e.enroll(eph.Key, "runner")
	peers := []*agent{e.enroll(perm.Key, "peer1"), e.enroll(perm.Key, "peer2")}
	rs, _ := e.openStream(runner.client)
	rs.next()
	var streams []*stream
	for _, p := range peers {
		s, _ := e.openStream(p.client)
		if m := s.next(); m.Netmap == nil || !slices.ContainsFunc(m.Netmap.Peers, func(p wire.Peer) bool { return p.ID == runner.resp.Node.ID }) {
			t.Fatalf("peer's first netmap lacks the runner: %+v", m)
		}
		streams = append(streams, s)
	}

	status, b := e.do(runner.client, http.MethodPost, wire.PathLeave, agentHdr(), mustJSON(wire.LeaveRequest{Reason: "down"}))
	if status != http.StatusNoContent {
		t.Fatalf("leave: %d %s", status, b)
	}
	// Gone from the store at once, its stream cut.
	if _, err := e.st.Node(context.Background(), runner.resp.Node.ID); err == nil {
		t.Fatal("runner still stored after leave")
	}
	rs.waitClosed()
	// Every peer drops it, all in the same netmap version.
	var versions []uint64
	for _, s := range streams {
		for {
			m := s.next()
			if m.Delta != nil && slices.Contains(m.Delta.Remove, runner.resp.Node.ID) {
				versions = append(versions, m.Delta.Version)
				break
			}
		}
	}
	if versions[0] != versions[1] {
		t.Errorf("peers told in versions %v, want one version", versions)
	}
	// Audited as node.leave, by the node itself.
	recs, err := e.st.AuditRecords(context.Background(), store.AuditFilter{Action: AuditNodeLeave})
	if err != nil || len(recs) != 1 || recs[0].Actor != "node:"+string(runner.resp.Node.ID) || !strings.Contains(recs[0].Summary, `"reason":"down"`) {
		t.Fatalf("audit: %+v %v", recs, err)
	}
	// A second leave is refused: the certificate names a deleted node.
	if status, _ := e.do(runner.client, http.MethodPost, wire.PathLeave, agentHdr(), mustJSON(wire.LeaveRequest{})); status != http.StatusForbidden {
		t.Errorf("second leave: %d, want 403", status)
	}
}

func TestLeaveIsRefusedToPermanentNodesAndBadInput(t *testing.T) {
	e := newEnv(t, nil)
	perm := e.createKey(wire.CreateKeyRequest{Reusable: true})
	eph := e.createKey(wire.CreateKeyRequest{Reusable: true, Ephemeral: true})
	server := e.enroll(perm.Key, "server")
	runner := e.enroll(eph.Key, "runner")
	tests := []struct {
		name string
		a    *agent
		body []byte
		want int
	}{
		{"permanent node", server, mustJSON(wire.LeaveRequest{}), http.StatusConflict},
		{"reason too long", runner, mustJSON(wire.LeaveRequest{Reason: strings.Repeat("x", wire.MaxLeaveReason+1)}), http.StatusBadRequest},
		{"reason with a newline", runner, mustJSON(wire.LeaveRequest{Reason: "a\nb"}), http.StatusBadRequest},
		{"unknown field", runner, []byte(`{"node":"other"}`), http.StatusBadRequest},
		{"no certificate", nil, mustJSON(wire.LeaveRequest{}), http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.client
			if tt.a != nil {
				c = tt.a.client
			}
			status, b := e.do(c, http.MethodPost, wire.PathLeave, agentHdr(), tt.body)
			if status != tt.want {
				t.Fatalf("%d %s, want %d", status, b, tt.want)
			}
			errorMessage(t, b)
		})
	}
	if n := e.nodeCount(); n != 2 {
		t.Fatalf("%d nodes after refused leaves, want 2", n)
	}
}
