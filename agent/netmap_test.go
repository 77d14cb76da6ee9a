package agent

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/latchnet/latch/overlay"
	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func key(b byte) wire.NodePublic {
	var k wire.NodePublic
	k[0], k[31] = b, 1
	return k
}

func TestConfigFromNetmap(t *testing.T) {
	priv, _ := wgtypes.GeneratePrivateKey()
	self := wire.NodePublic(priv.PublicKey())
	ep := netip.MustParseAddrPort
	rule := wire.FilterRule{ID: "r", Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{{First: 1, Last: 65535}}}
	other := wire.FilterRule{ID: "other", Protocols: []wire.Proto{wire.ProtoUDP}, Ports: []wire.PortRange{{First: 53, Last: 53}}}
	// The packet filter gets each rule with the addresses of exactly the
	// peers whose entries name it.
	resolved := rule
	resolved.Sources = pfx("100.64.0.3/32", "fd7a:1:2::3/128")
	tests := []struct {
		name string
		nm   wire.Netmap
		want overlay.Config
	}{
		{
			name: "dual stack self, peers sorted by key, first endpoint, bad peers skipped",
			nm: wire.Netmap{
				Version: 4,
				Self:    wire.Node{ID: "s", Key: self, Addresses: pfx("100.64.0.1/32", "fd7a:1:2::1/128")},
				Peers: []wire.Peer{
					{Node: wire.Node{ID: "b", Key: key(9), Addresses: pfx("100.64.0.3/32", "fd7a:1:2::3/128")}, Rules: []string{"r"}},
					{Node: wire.Node{ID: "a", Key: key(2), Addresses: pfx("100.64.0.2/32"), Endpoints: []netip.AddrPort{ep("198.18.0.2:51820"), ep("[2001:db8::2]:51820")}}},
					{Node: wire.Node{ID: "dup", Key: key(2), Addresses: pfx("100.64.0.9/32")}},
					{Node: wire.Node{ID: "me", Key: self, Addresses: pfx("100.64.0.8/32")}},
					{Node: wire.Node{ID: "zero", Addresses: pfx("100.64.0.7/32")}},
				},
				Rules: []wire.FilterRule{rule, other},
			},
			want: overlay.Config{
				PrivateKey: priv,
				ListenPort: 51820,
				Addresses:  pfx("100.64.0.1/32", "fd7a:1:2::1/128"),
				Routes:     pfx("100.64.0.0/10", "fd7a:1:2::/48"),
				Peers: []overlay.Peer{
					{Key: key(2), AllowedIPs: pfx("100.64.0.2/32"), Endpoint: ep("198.18.0.2:51820"), Keepalive: 25 * time.Second},
					{Key: key(9), AllowedIPs: pfx("100.64.0.3/32", "fd7a:1:2::3/128"), Keepalive: 25 * time.Second},
				},
				Rules: []wire.FilterRule{resolved, other},
			},
		},
		{
			name: "IPv4 only, no peers, no rules",
			nm:   wire.Netmap{Self: wire.Node{ID: "s", Key: self, Addresses: pfx("100.64.0.1/32")}},
			want: overlay.Config{
				PrivateKey: priv,
				ListenPort: 51820,
				Addresses:  pfx("100.64.0.1/32"),
				Routes:     pfx("100.64.0.0/10"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ConfigFromNetmap(&tt.nm, priv, 51820)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ConfigFromNetmap =\n%+v\nwant\n%+v", got, tt.want)
			}
			if !configEqual(&got, &tt.want) {
				t.Error("configEqual disagrees with DeepEqual")
			}
			// The config must not alias the netmap.
			if len(tt.nm.Self.Addresses) > 0 {
				tt.nm.Self.Addresses[0] = netip.MustParsePrefix("10.0.0.1/32")
				if got.Addresses[0] == tt.nm.Self.Addresses[0] {
					t.Error("config aliases the netmap's addresses")
				}
			}
		})
	}
}

func TestConfigEqualSeesEveryField(t *testing.T) {
	base := func() overlay.Config {
		return overlay.Config{
			ListenPort: 1, Addresses: pfx("100.64.0.1/32"), Routes: pfx("100.64.0.0/10"),
			Peers: []overlay.Peer{{Key: key(1), AllowedIPs: pfx("100.64.0.2/32"), Keepalive: time.Second}},
			Rules: []wire.FilterRule{{ID: "r", Sources: pfx("100.64.0.2/32"), Protocols: []wire.Proto{6}, Ports: []wire.PortRange{{First: 1, Last: 2}}}},
		}
	}
	changes := map[string]func(*overlay.Config){
		"port":          func(c *overlay.Config) { c.ListenPort = 2 },
		"key":           func(c *overlay.Config) { c.PrivateKey[0] = 1 },
		"address":       func(c *overlay.Config) { c.Addresses = pfx("100.64.0.9/32") },
		"route":         func(c *overlay.Config) { c.Routes = nil },
		"peer endpoint": func(c *overlay.Config) { c.Peers[0].Endpoint = netip.MustParseAddrPort("1.2.3.4:5") },
		"peer ips":      func(c *overlay.Config) { c.Peers[0].AllowedIPs = nil },
		"rule ports":    func(c *overlay.Config) { c.Rules[0].Ports[0].Last = 3 },
		"rule expiry":   func(c *overlay.Config) { c.Rules[0].Expires = time.Unix(1, 0) },
	}
	for name, change := range changes {
		a, b := base(), base()
		change(&b)
		if configEqual(&a, &b) {
			t.Errorf("configEqual misses a change of %s", name)
		}
	}
	a, b := base(), base()
	b.Rules[0].Expires = time.Unix(5, 0).In(time.FixedZone("x", 3600))
	a.Rules[0].Expires = time.Unix(5, 0).UTC()
	if !configEqual(&a, &b) {
		t.Error("configEqual compares rule expiry by location, not instant")
	}
}

func TestLocalEndpoints(t *testing.T) {
	ia := func(iface string, up, lo bool, addr string) InterfaceAddr {
		return InterfaceAddr{Interface: iface, Up: up, Loopback: lo, Addr: netip.MustParseAddr(addr)}
	}
	self := pfx("100.64.0.5/32", "fd7a:1:2::5/128")
	addrs := []InterfaceAddr{
		ia("lo", true, true, "127.0.0.1"),
		ia("eth0", true, false, "2001:db8::1"),
		ia("eth0", true, false, "198.18.0.5"),
		ia("eth0", true, false, "fe80::1"),
		ia("eth1", false, false, "198.18.1.5"),
		ia("latch0", true, false, "100.64.0.5"),
		ia("latch0", true, false, "fd7a:1:2::5"),
		ia("eth2", true, false, "100.100.0.1"),
		ia("eth2", true, false, "fd7a:1:2::99"),
		ia("eth2", true, false, "fd00:9::1"),
		ia("eth3", true, false, "::ffff:10.1.2.3"),
		ia("eth4", true, false, "198.18.0.5"),
		ia("eth5", true, false, "224.0.0.1"),
	}
	got := LocalEndpoints(addrs, "latch0", self, 51820)
	want := []netip.AddrPort{
		netip.MustParseAddrPort("198.18.0.5:51820"),
		netip.MustParseAddrPort("10.1.2.3:51820"),
		netip.MustParseAddrPort("[2001:db8::1]:51820"),
		netip.MustParseAddrPort("[fd00:9::1]:51820"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LocalEndpoints = %v, want %v", got, want)
	}
}

func TestRenewAtIsHalfLifeWithJitter(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(time.Hour)
	lowest := renewAt(nb, na, func(int64) int64 { return 0 })
	highest := renewAt(nb, na, func(n int64) int64 { return n - 1 })
	if want := nb.Add(27 * time.Minute); !lowest.Equal(want) {
		t.Errorf("earliest renewal = %v, want %v", lowest, want)
	}
	if want := nb.Add(33 * time.Minute); !highest.Equal(want) {
		t.Errorf("latest renewal = %v, want %v", highest, want)
	}
	if mid := renewAt(nb, na, nil); mid.Before(lowest) || mid.After(highest) {
		t.Errorf("renewal %v outside [%v, %v]", mid, lowest, highest)
	}
}

func TestFindPeer(t *testing.T) {
	nm := &wire.Netmap{Peers: []wire.Peer{
		{Node: wire.Node{ID: "a", Name: "web-1", Addresses: pfx("100.64.0.2/32", "fd7a:1:2::2/128")}},
		{Node: wire.Node{ID: "b", Name: "db-1", Addresses: pfx("100.64.0.3/32")}},
	}}
	for q, want := range map[string]wire.NodeID{"web-1": "a", "WEB-1": "a", "100.64.0.3": "b", "fd7a:1:2::2": "a", "nope": "", "100.64.0.9": ""} {
		p, ok := findPeer(nm, q)
		if ok != (want != "") || p.ID != want {
			t.Errorf("findPeer(%q) = %q, %v; want %q", q, p.ID, ok, want)
		}
	}
}
