package api

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/latchnet/latch/wire"
)

// TestRotateDeliversTheNewKeyToPeersAndSelf proves a rotation is stored,
// reaches a peer's stream as a delta carrying the new key, updates the
// rotating node's own Self, and is audited.
func TestRotateDeliversTheNewKeyToPeersAndSelf(t *testing.T) {
	e := newEnv(t, nil)
	apiKey := e.createKey(wire.CreateKeyRequest{Reusable: true, Tags: []wire.Tag{"tag:api"}})
	webKey := e.createKey(wire.CreateKeyRequest{Reusable: true, Tags: []wire.Tag{"tag:web"}})
	a := e.enroll(apiKey.Key, "alpha")
	b := e.enroll(webKey.Key, "beta")
	e.setPolicy(webAPIPolicy)

	sa, _ := e.openStream(a.client)
	sb, _ := e.openStream(b.client)
	haveA := sa.next().Netmap
	haveB := sb.next().Netmap
	if len(haveA.Peers) != 1 || haveA.Peers[0].Key != b.wgKey {
		t.Fatalf("alpha's peers before rotation %+v", haveA.Peers)
	}

	var newKey wire.NodePublic
	rand.Read(newKey[:])
	status, body := e.do(b.client, http.MethodPost, wire.PathRotate, agentHdr(), mustJSON(wire.RotateRequest{WireGuardKey: newKey}))
	if status != http.StatusOK {
		t.Fatalf("rotate: %d %s", status, body)
	}
	var rr wire.RotateResponse
	if err := json.Unmarshal(body, &rr); err != nil {
		t.Fatal(err)
	}
	if rr.Node.Key != newKey || rr.Node.ID != b.resp.Node.ID {
		t.Fatalf("rotate response %+v", rr.Node)
	}
	if n, _ := e.st.Node(context.Background(), b.resp.Node.ID); n.WireGuardKey != newKey {
		t.Fatalf("stored key %v, want %v", n.WireGuardKey, newKey)
	}

	m := sa.next()
	if m.Type != wire.MsgDelta || len(m.Delta.Upsert) != 1 || m.Delta.Upsert[0].ID != b.resp.Node.ID || m.Delta.Upsert[0].Key != newKey {
		t.Fatalf("alpha's delta after beta rotated: %+v", m)
	}
	if _, err := haveA.Apply(m.Delta); err != nil {
		t.Fatal(err)
	}
	m = sb.next()
	if m.Type != wire.MsgDelta || m.Delta.Self == nil || m.Delta.Self.Key != newKey {
		t.Fatalf("beta's own delta after rotating: %+v", m)
	}
	if _, err := haveB.Apply(m.Delta); err != nil {
		t.Fatal(err)
	}

	var recs []wire.AuditRecord
	e.admin(http.MethodGet, wire.PathAudit+"?after_seq=0&limit=1000", nil, http.StatusOK, &recs)
	found := 0
	for _, r := range recs {
		if r.Action == auditNodeRotate && r.Target == "node:"+string(b.resp.Node.ID) {
			found++
		}
	}
	if found != 1 {
		t.Fatalf("%d node.rotate audit records, want 1", found)
	}

	// Asking again for the key the node already has succeeds and changes
	// nothing: an agent that lost the answer may retry.
	status, body = e.do(b.client, http.MethodPost, wire.PathRotate, agentHdr(), mustJSON(wire.RotateRequest{WireGuardKey: newKey}))
	if status != http.StatusOK {
		t.Fatalf("repeated rotate: %d %s", status, body)
	}
}

func TestRotateRefusalsStoreNothing(t *testing.T) {
	e := newEnv(t, nil)
	key := e.createKey(wire.CreateKeyRequest{Reusable: true})
	a := e.enroll(key.Key, "alpha")
	b := e.enroll(key.Key, "beta")
	tests := []struct {
		name   string
		hdr    map[string]string
		body   []byte
		status int
	}{
		{"key of another node", agentHdr(), mustJSON(wire.RotateRequest{WireGuardKey: b.wgKey}), http.StatusConflict},
		{"all-zero key", agentHdr(), mustJSON(wire.RotateRequest{}), http.StatusBadRequest},
		{"malformed", agentHdr(), []byte(`{"wireguard_key":`), http.StatusBadRequest},
		{"unknown field", agentHdr(), []byte(`{"wireguard_key":"` + b.wgKey.String() + `","id":"x"}`), http.StatusBadRequest},
		{"no protocol", nil, mustJSON(wire.RotateRequest{WireGuardKey: newAgent().wgKey}), http.StatusUpgradeRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.do(a.client, http.MethodPost, wire.PathRotate, tt.hdr, tt.body)
			errorMessage(t, body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if n, _ := e.st.Node(context.Background(), a.resp.Node.ID); n.WireGuardKey != a.wgKey {
				t.Fatalf("key changed to %v", n.WireGuardKey)
			}
		})
	}
	// Without a node certificate there is no rotation.
	if status, _ := e.do(e.client, http.MethodPost, wire.PathRotate, agentHdr(), mustJSON(wire.RotateRequest{WireGuardKey: newAgent().wgKey})); status != http.StatusUnauthorized {
		t.Fatalf("rotate without certificate: %d", status)
	}
}
