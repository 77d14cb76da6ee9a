package api

import (
	"crypto/ed25519"
	"net/http"
	"net/netip"
	"testing"

	"github.com/latchnet/latch/coordinator/netmap"
	"github.com/latchnet/latch/wire"
)

// TestEveryStreamMessageVerifiesWithTheEnrollmentKey follows one node's
// stream through policy, endpoint, join and delete changes (full-map
// updates and single-peer patches) and checks each netmap and delta
// against the netmap key the node got in its EnrollResponse.
func TestEveryStreamMessageVerifiesWithTheEnrollmentKey(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	var hub *netmap.Hub
	e := newEnv(t, func(cfg *Config) {
		hub = netmap.NewHub(netmap.HubConfig{Source: &netmap.StoreSource{Store: cfg.Store}, SigningKey: key})
		cfg.Hub = hub
	})
	t.Cleanup(hub.Close) // before the server's cleanup, which waits for streams
	e.hub = hub

	apiKey := e.createKey(wire.CreateKeyRequest{Reusable: true, Tags: []wire.Tag{"tag:api"}})
	webKey := e.createKey(wire.CreateKeyRequest{Reusable: true, Tags: []wire.Tag{"tag:web"}})
	a := e.enroll(apiKey.Key, "alpha")
	pub := ed25519.PublicKey(a.resp.NetmapKey)
	if !pub.Equal(key.Public()) {
		t.Fatalf("EnrollResponse.NetmapKey = %x, want the hub's key", a.resp.NetmapKey)
	}
	self := a.resp.Node.ID
	s, status := e.openStream(a.client)
	if status != http.StatusOK {
		t.Fatalf("stream: %d", status)
	}
	m := s.next()
	if m.Type != wire.MsgNetmap {
		t.Fatalf("first message %s", m.Type)
	}
	if err := wire.VerifyNetmap(pub, self, m.Netmap, m.Signature); err != nil {
		t.Fatalf("full netmap: %v", err)
	}
	have := m.Netmap
	next := func(what string) {
		t.Helper()
		m := s.next()
		if m.Type != wire.MsgDelta {
			t.Fatalf("%s: got %s, want delta", what, m.Type)
		}
		nm, err := have.Apply(m.Delta)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if err := wire.VerifyNetmap(pub, self, nm, m.Signature); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		// The signature covers the new map, not the old one.
		if err := wire.VerifyNetmap(pub, self, have, m.Signature); err == nil {
			t.Fatalf("%s: signature verifies the map before the delta too", what)
		}
		have = nm
	}

	b := e.enroll(webKey.Key, "beta")
	e.setPolicy(webAPIPolicy)
	next("policy")
	status, body := e.do(b.client, http.MethodPost, wire.PathUpdate, agentHdr(),
		mustJSON(wire.UpdateRequest{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.9:41641")}}))
	if status != http.StatusNoContent {
		t.Fatalf("update: %d %s", status, body)
	}
	next("endpoints")
	e.enroll(webKey.Key, "gamma")
	next("join")
	e.admin(http.MethodDelete, wire.PathNodes+"/beta", nil, http.StatusNoContent, nil)
	next("delete")
	e.setPolicy(`{"tagOwners": {"tag:web": [], "tag:api": []}}`)
	next("policy removed")
	if len(have.Peers) != 0 || len(have.Rules) != 0 {
		t.Fatalf("after the policy went: %+v", have)
	}
}
