package agent

import (
	"bytes"
	"net/netip"
	"slices"

	"github.com/latchnet/latch/overlay"
	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// CGNATRange is the overlay's IPv4 range, routed into the device whole.
var CGNATRange = netip.MustParsePrefix("100.64.0.0/10")

// ConfigFromNetmap is the data plane's desired state for nm: self's
// addresses, the overlay routes (100.64.0.0/10 and the /48 holding self's
// IPv6 address), one peer per visible node (its overlay addresses as
// AllowedIPs, its first endpoint, PeerKeepalive), sorted by key, and the
// netmap's rules. Peers with a zero key, self's key, or a key already
// seen are skipped: WireGuard cannot hold two peers with one key.
func ConfigFromNetmap(nm *wire.Netmap, key wgtypes.Key, port int) overlay.Config {
	cfg := overlay.Config{
		PrivateKey: key,
		ListenPort: port,
		Addresses:  slices.Clone(nm.Self.Addresses),
		Routes:     OverlayRoutes(nm.Self.Addresses),
		Rules:      wire.PeerSources(nm.Rules, nm.Peers),
	}
	self := wire.NodePublic(key.PublicKey())
	seen := make(map[wire.NodePublic]bool, len(nm.Peers))
	for _, p := range nm.Peers {
		if p.Key.IsZero() || p.Key == self || seen[p.Key] {
			continue
		}
		seen[p.Key] = true
		peer := overlay.Peer{
			Key:        p.Key,
			AllowedIPs: slices.Clone(p.Addresses),
			Keepalive:  PeerKeepalive,
		}
		if len(p.Endpoints) > 0 {
			peer.Endpoint = p.Endpoints[0]
		}
		cfg.Peers = append(cfg.Peers, peer)
	}
	slices.SortFunc(cfg.Peers, func(a, b overlay.Peer) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	return cfg
}

// OverlayRoutes returns 100.64.0.0/10 and the /48 of every IPv6 address.
func OverlayRoutes(self []netip.Prefix) []netip.Prefix {
	routes := []netip.Prefix{CGNATRange}
	for _, p := range self {
		if p.Addr().Is6() && !p.Addr().Is4In6() {
			r, _ := p.Addr().Prefix(48)
			if !slices.Contains(routes, r) {
				routes = append(routes, r)
			}
		}
	}
	return routes
}

// configEqual reports whether a and b are the same desired state.
func configEqual(a, b *overlay.Config) bool {
	if a.PrivateKey != b.PrivateKey || a.ListenPort != b.ListenPort ||
		!slices.Equal(a.Addresses, b.Addresses) || !slices.Equal(a.Routes, b.Routes) {
		return false
	}
	if !slices.EqualFunc(a.Peers, b.Peers, func(x, y overlay.Peer) bool {
		return x.Key == y.Key && x.Endpoint == y.Endpoint && x.Keepalive == y.Keepalive && slices.Equal(x.AllowedIPs, y.AllowedIPs)
	}) {
		return false
	}
	return slices.EqualFunc(a.Rules, b.Rules, func(x, y wire.FilterRule) bool {
		return x.ID == y.ID && x.Expires.Equal(y.Expires) && slices.Equal(x.Sources, y.Sources) &&
			slices.Equal(x.Protocols, y.Protocols) && slices.Equal(x.Ports, y.Ports)
	})
}
