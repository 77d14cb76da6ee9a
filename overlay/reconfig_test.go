package overlay

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/acl/filter"
	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func testKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func newFakeEngine() (*Engine, *fakeWG, *fakeLink) {
	wg, link := newFakeWG(), &fakeLink{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return newEngine("fake0", 1340, log, filter.New(filter.Options{}), wg, link), wg, link
}

// testPeer is a peer numbered n: overlay 100.64.0.n and fd7a::n.
func testPeer(t *testing.T, n int) Peer {
	t.Helper()
	k := testKey(t).PublicKey()
	return Peer{
		Key:        wire.NodePublic(k),
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, byte(n)}), 32), netip.MustParsePrefix("fd7a::" + string(rune('0'+n)) + "/128")},
		Endpoint:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(n)}), 51820),
	}
}

func baseConfig(t *testing.T, peers ...Peer) Config {
	t.Helper()
	var srcs []netip.Prefix
	for _, p := range peers {
		srcs = append(srcs, p.AllowedIPs...)
	}
	return Config{
		PrivateKey: testKey(t),
		ListenPort: 51820,
		Addresses:  []netip.Prefix{pfx("100.64.0.1/32"), pfx("fd7a::1/128")},
		Routes:     []netip.Prefix{pfx("100.64.0.0/10"), pfx("fd7a::/48")},
		Peers:      peers,
		Rules: []wire.FilterRule{{
			ID:        "interim-allow-peers",
			Sources:   srcs,
			Protocols: []wire.Proto{wire.ProtoTCP, wire.ProtoUDP, wire.ProtoICMP, wire.ProtoICMPv6},
			Ports:     []wire.PortRange{{First: 1, Last: 65535}},
		}},
	}
}

// peerKeys lists the keys a ConfigureDevice call touches, with what it does.
func peerOps(c wgtypes.Config) []string {
	var out []string
	for _, p := range c.Peers {
		op := "add"
		switch {
		case p.Remove:
			op = "remove"
		case p.UpdateOnly:
			op = "update"
		}
		out = append(out, op+" "+p.PublicKey.String())
	}
	return out
}

func TestReconfigFromScratch(t *testing.T) {
	e, wg, link := newFakeEngine()
	a, b := testPeer(t, 2), testPeer(t, 3)
	cfg := baseConfig(t, a, b)
	if err := e.Reconfig(cfg); err != nil {
		t.Fatal(err)
	}
	calls := wg.calls()
	if len(calls) != 1 {
		t.Fatalf("%d ConfigureDevice calls, want 1", len(calls))
	}
	c := calls[0]
	if c.PrivateKey == nil || *c.PrivateKey != cfg.PrivateKey || c.ListenPort == nil || *c.ListenPort != 51820 || c.ReplacePeers {
		t.Errorf("device config: key set %v, port %v, replace peers %v", c.PrivateKey != nil, c.ListenPort, c.ReplacePeers)
	}
	want := []string{"add " + wgtypes.Key(a.Key).String(), "add " + wgtypes.Key(b.Key).String()}
	if diff := cmp.Diff(want, peerOps(c)); diff != "" {
		t.Errorf("peer operations (-want +got):\n%s", diff)
	}
	st, err := e.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Peers) != 2 || st.PublicKey != wire.NodePublic(cfg.PrivateKey.PublicKey()) {
		t.Fatalf("status: %+v", st)
	}
	for _, p := range st.Peers {
		exp := a
		if p.Key == b.Key {
			exp = b
		}
		if p.Endpoint != exp.Endpoint || !slices.Equal(p.AllowedIPs, canonicalPrefixes(exp.AllowedIPs)) {
			t.Errorf("peer %s: endpoint %v allowed %v, want %v %v", p.Key.ShortString(), p.Endpoint, p.AllowedIPs, exp.Endpoint, exp.AllowedIPs)
		}
	}
	wantOps := []string{"add-addr 100.64.0.1/32", "add-addr fd7a::1/128", "up", "add-route 100.64.0.0/10", "add-route fd7a::/48"}
	if diff := cmp.Diff(wantOps, link.takeOps()); diff != "" {
		t.Errorf("link operations (-want +got):\n%s", diff)
	}
}

func TestReconfigWithSameConfigChangesNothing(t *testing.T) {
	e, wg, link := newFakeEngine()
	cfg := baseConfig(t, testPeer(t, 2), testPeer(t, 3))
	if err := e.Reconfig(cfg); err != nil {
		t.Fatal(err)
	}
	link.takeOps()
	for range 3 {
		if err := e.Reconfig(cfg); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(wg.calls()); n != 1 {
		t.Errorf("%d ConfigureDevice calls after repeating the config, want 1", n)
	}
	if ops := link.takeOps(); len(ops) != 0 {
		t.Errorf("link changed on a repeated config: %v", ops)
	}
}

func TestReconfigAddingPeerLeavesOtherSessionsAlone(t *testing.T) {
	e, wg, _ := newFakeEngine()
	a, b, c := testPeer(t, 2), testPeer(t, 3), testPeer(t, 4)
	cfg := baseConfig(t, a, b)
	if err := e.Reconfig(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Peers = append(cfg.Peers, c)
	if err := e.Reconfig(cfg); err != nil {
		t.Fatal(err)
	}
	calls := wg.calls()
	last := calls[len(calls)-1]
	if diff := cmp.Diff([]string{"add " + wgtypes.Key(c.Key).String()}, peerOps(last)); diff != "" {
		t.Errorf("peer operations (-want +got):\n%s", diff)
	}
	if last.PrivateKey != nil || last.ListenPort != nil || last.ReplacePeers {
		t.Errorf("adding a peer touched device settings: %+v", last)
	}
	for _, k := range []wire.NodePublic{a.Key, b.Key, c.Key} {
		if n := wg.sessions[wgtypes.Key(k)]; n != 1 {
			t.Errorf("peer %s created %d times, want once", k.ShortString(), n)
		}
	}
}

func TestReconfigPeerChanges(t *testing.T) {
	tests := []struct {
		name   string
		change func(cfg *Config)
		want   func(a, b Peer) []string
		check  func(t *testing.T, c wgtypes.PeerConfig)
	}{
		{
			name:   "removed peer is removed alone",
			change: func(cfg *Config) { cfg.Peers = cfg.Peers[:1] },
			want:   func(a, b Peer) []string { return []string{"remove " + wgtypes.Key(b.Key).String()} },
		},
		{
			name: "changed allowed IPs replace that peer's only",
			change: func(cfg *Config) {
				cfg.Peers[1].AllowedIPs = append(slices.Clone(cfg.Peers[1].AllowedIPs), pfx("10.1.0.0/16"))
			},
			want: func(a, b Peer) []string { return []string{"update " + wgtypes.Key(b.Key).String()} },
			check: func(t *testing.T, c wgtypes.PeerConfig) {
				if !c.ReplaceAllowedIPs || len(c.AllowedIPs) != 3 || c.Endpoint != nil || c.PersistentKeepaliveInterval != nil {
					t.Errorf("update: %+v", c)
				}
			},
		},
		{
			name:   "allowed IPs in another order or unmasked are no change",
			change: func(cfg *Config) { slices.Reverse(cfg.Peers[0].AllowedIPs) },
			want:   func(a, b Peer) []string { return nil },
		},
		{
			name:   "keepalive change updates that peer",
			change: func(cfg *Config) { cfg.Peers[0].Keepalive = 25 * time.Second },
			want:   func(a, b Peer) []string { return []string{"update " + wgtypes.Key(a.Key).String()} },
			check: func(t *testing.T, c wgtypes.PeerConfig) {
				if c.PersistentKeepaliveInterval == nil || *c.PersistentKeepaliveInterval != 25*time.Second || c.ReplaceAllowedIPs {
					t.Errorf("update: %+v", c)
				}
			},
		},
		{
			name:   "endpoint change updates that peer",
			change: func(cfg *Config) { cfg.Peers[0].Endpoint = netip.MustParseAddrPort("198.18.0.99:4000") },
			want:   func(a, b Peer) []string { return []string{"update " + wgtypes.Key(a.Key).String()} },
			check: func(t *testing.T, c wgtypes.PeerConfig) {
				if c.Endpoint == nil || c.Endpoint.String() != "198.18.0.99:4000" {
					t.Errorf("update: %+v", c)
				}
			},
		},
		{
			name:   "unknown endpoint leaves the device's alone",
			change: func(cfg *Config) { cfg.Peers[0].Endpoint = netip.AddrPort{} },
			want:   func(a, b Peer) []string { return nil },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, wg, _ := newFakeEngine()
			a, b := testPeer(t, 2), testPeer(t, 3)
			cfg := baseConfig(t, a, b)
			if err := e.Reconfig(cfg); err != nil {
				t.Fatal(err)
			}
			next := cfg
			next.Peers = slices.Clone(cfg.Peers)
			for i := range next.Peers {
				next.Peers[i].AllowedIPs = slices.Clone(next.Peers[i].AllowedIPs)
			}
			tt.change(&next)
			if err := e.Reconfig(next); err != nil {
				t.Fatal(err)
			}
			calls := wg.calls()
			var got []string
			if len(calls) > 1 {
				got = peerOps(calls[len(calls)-1])
			}
			if diff := cmp.Diff(tt.want(a, b), got); diff != "" {
				t.Errorf("peer operations (-want +got):\n%s", diff)
			}
			if tt.check != nil && len(calls) > 1 && len(calls[len(calls)-1].Peers) > 0 {
				tt.check(t, calls[len(calls)-1].Peers[0])
			}
			for _, k := range []wire.NodePublic{a.Key, b.Key} {
				if n := wg.sessions[wgtypes.Key(k)]; n > 1 {
					t.Errorf("peer %s was torn down and set up again", k.ShortString())
				}
			}
		})
	}
}

func TestReconfigKeepsRoamedEndpoint(t *testing.T) {
	e, wg, _ := newFakeEngine()
	a := testPeer(t, 2)
	cfg := baseConfig(t, a)
	if err := e.Reconfig(cfg); err != nil {
		t.Fatal(err)
	}
	roamed := netip.MustParseAddrPort("203.0.113.7:9999")
	wg.roam(wgtypes.Key(a.Key), roamed)
	if err := e.Reconfig(cfg); err != nil {
		t.Fatal(err)
	}
	st, err := e.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Peers[0].Endpoint != roamed {
		t.Errorf("endpoint %v after an unchanged Reconfig, want the roamed %v", st.Peers[0].Endpoint, roamed)
	}
}

func TestReconfigListenPortZeroKeepsPickedPort(t *testing.T) {
	e, wg, _ := newFakeEngine()
	cfg := baseConfig(t)
	cfg.ListenPort = 0
	if err := e.Reconfig(cfg); err != nil {
		t.Fatal(err)
	}
	if c := wg.calls()[0]; c.ListenPort != nil {
		t.Errorf("listen port set to %d for ListenPort 0", *c.ListenPort)
	}
	wg.dev.ListenPort = 40123 // what the device picked when it came up
	if err := e.Reconfig(cfg); err != nil {
		t.Fatal(err)
	}
	if n := len(wg.calls()); n != 1 {
		t.Errorf("%d ConfigureDevice calls, want 1", n)
	}
	st, _ := e.Status()
	if st.ListenPort != 40123 {
		t.Errorf("status listen port %d, want 40123", st.ListenPort)
	}
}

func TestReconfigNewPrivateKey(t *testing.T) {
	e, wg, _ := newFakeEngine()
	cfg := baseConfig(t, testPeer(t, 2))
	if err := e.Reconfig(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.PrivateKey = testKey(t)
	if err := e.Reconfig(cfg); err != nil {
		t.Fatal(err)
	}
	calls := wg.calls()
	last := calls[len(calls)-1]
	if len(calls) != 2 || last.PrivateKey == nil || *last.PrivateKey != cfg.PrivateKey || len(last.Peers) != 0 {
		t.Errorf("key rotation: %d calls, last %+v", len(calls), last)
	}
}

func TestReconfigRefusesInvalidConfigWhole(t *testing.T) {
	a := testPeer(t, 2)
	tests := []struct {
		name   string
		change func(cfg *Config)
		want   string
	}{
		{"zero private key", func(c *Config) { c.PrivateKey = wgtypes.Key{} }, "no private key"},
		{"port out of range", func(c *Config) { c.ListenPort = 70000 }, "listen port"},
		{"invalid address", func(c *Config) { c.Addresses = append(c.Addresses, netip.Prefix{}) }, "address"},
		{"invalid route", func(c *Config) { c.Routes = append(c.Routes, netip.Prefix{}) }, "route"},
		{"zero peer key", func(c *Config) { c.Peers = append(c.Peers, Peer{}) }, "zero key"},
		{"duplicate peer", func(c *Config) { c.Peers = append(c.Peers, a) }, "twice"},
		{"own key as peer", func(c *Config) {
			c.Peers = append(c.Peers, Peer{Key: wire.NodePublic(c.PrivateKey.PublicKey())})
		}, "own key"},
		{"keepalive too long", func(c *Config) { c.Peers[0].Keepalive = 100000 * time.Second }, "keepalive"},
		{"invalid allowed IP", func(c *Config) { c.Peers[0].AllowedIPs = []netip.Prefix{{}} }, "allowed IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, wg, link := newFakeEngine()
			cfg := baseConfig(t, a)
			cfg.Peers = slices.Clone(cfg.Peers)
			tt.change(&cfg)
			err := e.Reconfig(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Reconfig error %v, want one mentioning %q", err, tt.want)
			}
			if len(wg.calls()) != 0 || len(link.takeOps()) != 0 {
				t.Errorf("an invalid config changed something")
			}
			if _, r := e.filter.RunIn(udpPacket("100.64.0.2", "100.64.0.1", 1000, 53)); r != filter.DropNotLocal {
				t.Errorf("an invalid config reached the filter: %v", r)
			}
		})
	}
}

func TestReconfigRemovesStaleAddressesAndRoutes(t *testing.T) {
	e, _, link := newFakeEngine()
	link.addrs = []netip.Prefix{pfx("100.64.0.9/32"), pfx("100.64.0.1/32")}
	link.routes = []netip.Prefix{pfx("10.0.0.0/8"), pfx("100.64.0.0/10")}
	link.up = true
	if err := e.Reconfig(baseConfig(t)); err != nil {
		t.Fatal(err)
	}
	want := []string{"del-addr 100.64.0.9/32", "add-addr fd7a::1/128", "del-route 10.0.0.0/8", "add-route fd7a::/48"}
	if diff := cmp.Diff(want, link.takeOps()); diff != "" {
		t.Errorf("link operations (-want +got):\n%s", diff)
	}
}

func TestReconfigKeepsGoingAfterOneFailure(t *testing.T) {
	e, wg, link := newFakeEngine()
	link.failRouteAt = pfx("fd7a::/48")
	a := testPeer(t, 2)
	err := e.Reconfig(baseConfig(t, a))
	if err == nil || !strings.Contains(err.Error(), "fd7a::/48") {
		t.Fatalf("Reconfig error %v, want the failed route", err)
	}
	if d, _ := wg.Device(); len(d.Peers) != 1 {
		t.Errorf("peers not configured after a route failure")
	}
	if !slices.Contains(link.routes, pfx("100.64.0.0/10")) {
		t.Errorf("other routes not added after one failed")
	}
	link.failRouteAt = netip.Prefix{}
	if err := e.Reconfig(baseConfig(t, a)); err != nil {
		t.Fatalf("second Reconfig did not converge: %v", err)
	}
}

func TestReconfigSwapsFilterRules(t *testing.T) {
	e, _, _ := newFakeEngine()
	a := testPeer(t, 2)
	cfg := baseConfig(t, a)
	if err := e.Reconfig(cfg); err != nil {
		t.Fatal(err)
	}
	syn := tcpPacket("100.64.0.2", "100.64.0.1", 1000, 22, 0x02)
	ack := tcpPacket("100.64.0.2", "100.64.0.1", 1000, 22, 0x10)
	if _, r := e.filter.RunIn(syn); r != filter.AcceptRule {
		t.Fatalf("allowed peer's SYN: %v", r)
	}
	if _, r := e.filter.RunOut(tcpPacket("100.64.0.1", "100.64.0.2", 22, 1000, 0x12)); r != filter.AcceptOutbound {
		t.Fatalf("this node's SYN-ACK: %v", r)
	}
	if _, r := e.filter.RunIn(tcpPacket("100.64.0.7", "100.64.0.1", 1000, 22, 0x02)); r != filter.DropNoRule {
		t.Fatalf("unknown source: %v", r)
	}
	cfg.Rules = nil
	if err := e.Reconfig(cfg); err != nil {
		t.Fatal(err)
	}
	if _, r := e.filter.RunIn(ack); r != filter.DropRevoked {
		t.Errorf("established flow after its rule was removed: %v", r)
	}
}

func TestFilterTreatsOnlyOwnAddressesAsLocal(t *testing.T) {
	e, _, _ := newFakeEngine()
	cfg := baseConfig(t, testPeer(t, 2))
	cfg.Addresses = []netip.Prefix{pfx("100.64.0.1/10")}
	if err := e.Reconfig(cfg); err != nil {
		t.Fatal(err)
	}
	if _, r := e.filter.RunIn(udpPacket("100.64.0.2", "100.64.0.1", 1000, 53)); r != filter.AcceptRule {
		t.Errorf("to own address: %v", r)
	}
	if _, r := e.filter.RunIn(udpPacket("100.64.0.2", "100.64.0.5", 1000, 53)); r != filter.DropNotLocal {
		t.Errorf("to another address in the same subnet: %v", r)
	}
}

func TestReconfigReportsInvalidRulesButAppliesTheRest(t *testing.T) {
	e, wg, _ := newFakeEngine()
	cfg := baseConfig(t, testPeer(t, 2))
	cfg.Rules = append(cfg.Rules, wire.FilterRule{ID: "bad", Sources: []netip.Prefix{pfx("0.0.0.0/0")}, Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{{First: 0, Last: 10}}})
	err := e.Reconfig(cfg)
	if err == nil || !strings.Contains(err.Error(), `"bad"`) {
		t.Fatalf("Reconfig error %v, want one naming the bad rule", err)
	}
	if len(wg.calls()) != 1 {
		t.Errorf("peers not applied alongside a bad rule")
	}
	if _, r := e.filter.RunIn(tcpPacket("100.64.0.7", "100.64.0.1", 1000, 5, 0x02)); r != filter.DropNoRule {
		t.Errorf("the bad rule widened access: %v", r)
	}
}

func TestClosedEngineRefusesCalls(t *testing.T) {
	e, _, _ := newFakeEngine()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := e.Reconfig(baseConfig(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("Reconfig after Close: %v", err)
	}
	if _, err := e.Status(); !errors.Is(err, ErrClosed) {
		t.Errorf("Status after Close: %v", err)
	}
}

func ipv4Header(src, dst string, proto byte, l4 []byte) []byte {
	b := make([]byte, 20, 20+len(l4))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(l4)))
	b[8], b[9] = 64, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	return append(b, l4...)
}

func udpPacket(src, dst string, sport, dport uint16) []byte {
	l4 := make([]byte, 8)
	binary.BigEndian.PutUint16(l4, sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint16(l4[4:], 8)
	return ipv4Header(src, dst, 17, l4)
}

func tcpPacket(src, dst string, sport, dport uint16, flags byte) []byte {
	l4 := make([]byte, 20)
	binary.BigEndian.PutUint16(l4, sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	l4[12], l4[13] = 5<<4, flags
	return ipv4Header(src, dst, 6, l4)
}
