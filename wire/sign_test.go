package wire

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func signTestMap() *Netmap {
	created := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	return &Netmap{
		Version: 7,
		Self:    Node{ID: "self", Name: "a", Key: NodePublic{9}, Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32")}, Created: created},
		Peers: []Peer{
			{Node: Node{ID: "p2", Name: "c", Key: NodePublic{2}, Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.3/32")}}, Rules: []string{"r"}},
			{Node: Node{ID: "p1", Name: "b", Key: NodePublic{1}, Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.2/32")}}, Rules: []string{"r"}},
		},
		Rules: []FilterRule{{ID: "r", Protocols: []Proto{ProtoTCP}, Ports: []PortRange{{22, 22}}}},
	}
}

func TestNetmapDigestIsCanonical(t *testing.T) {
	nm := signTestMap()
	want := nm.Digest("self")
	if again := nm.Digest("self"); again != want {
		t.Fatal("digest not deterministic")
	}
	// A JSON round trip, another peer order, and nil versus empty slices
	// describe the same map.
	b, _ := json.Marshal(nm)
	var rt Netmap
	if err := json.Unmarshal(b, &rt); err != nil {
		t.Fatal(err)
	}
	rt.Peers[0], rt.Peers[1] = rt.Peers[1], rt.Peers[0]
	if rt.Digest("self") != want {
		t.Error("digest changed over a JSON round trip and reordering")
	}
	empty1 := &Netmap{Version: 1, Self: Node{ID: "self"}}
	empty2 := &Netmap{Version: 1, Self: Node{ID: "self", Addresses: []netip.Prefix{}}, Peers: []Peer{}, Rules: []FilterRule{}}
	if empty1.Digest("self") != empty2.Digest("self") {
		t.Error("nil and empty slices digest differently")
	}
}

func TestVerifyNetmap(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	otherPub, _, _ := ed25519.GenerateKey(nil)
	nm := signTestMap()
	sig := SignDigest(key, nm.Digest("self"))
	if err := VerifyNetmap(pub, "self", nm, sig); err != nil {
		t.Fatalf("valid signature refused: %v", err)
	}
	tests := []struct {
		name   string
		key    ed25519.PublicKey
		node   NodeID
		mutate func(nm *Netmap, sig []byte) []byte
	}{
		{"another node", pub, "other", nil},
		{"signed for another node", pub, "self", func(nm *Netmap, _ []byte) []byte { return SignDigest(key, nm.Digest("other")) }},
		{"another version", pub, "self", func(nm *Netmap, s []byte) []byte { nm.Version++; return s }},
		{"peer key edited", pub, "self", func(nm *Netmap, s []byte) []byte { nm.Peers[0].Key[5] ^= 1; return s }},
		{"peer removed", pub, "self", func(nm *Netmap, s []byte) []byte { nm.Peers = nm.Peers[:1]; return s }},
		{"rule port edited", pub, "self", func(nm *Netmap, s []byte) []byte { nm.Rules[0].Ports[0].Last = 23; return s }},
		{"self address edited", pub, "self", func(nm *Netmap, s []byte) []byte {
			nm.Self.Addresses[0] = netip.MustParsePrefix("100.64.0.9/32")
			return s
		}},
		{"signature corrupted", pub, "self", func(_ *Netmap, s []byte) []byte { s[3] ^= 1; return s }},
		{"no signature", pub, "self", func(*Netmap, []byte) []byte { return nil }},
		{"other key", otherPub, "self", nil},
		{"no key", nil, "self", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := signTestMap()
			s := append([]byte(nil), sig...)
			if tt.mutate != nil {
				s = tt.mutate(m, s)
			}
			if err := VerifyNetmap(tt.key, tt.node, m, s); err == nil {
				t.Fatal("accepted")
			} else if tt.key != nil && !errors.Is(err, ErrBadSignature) {
				t.Errorf("error %v is not ErrBadSignature", err)
			}
		})
	}
}

func TestDeltaSignatureCoversResult(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	nm := signTestMap()
	d := &Delta{PrevVersion: 7, Version: 8, Remove: []NodeID{"p1"}}
	next, err := nm.Apply(d)
	if err != nil {
		t.Fatal(err)
	}
	sig := SignDigest(key, next.Digest("self"))
	if err := VerifyNetmap(pub, "self", next, sig); err != nil {
		t.Fatalf("applied delta refused: %v", err)
	}
	// The same signature does not cover the map without the delta applied.
	if err := VerifyNetmap(pub, "self", nm, sig); err == nil {
		t.Error("signature of the new map verified the old one")
	}
}
