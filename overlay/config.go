package overlay

import (
	"net/netip"
	"time"

	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Config is the whole desired state of a node's data plane. Reconfig makes
// the device match it; applying the same Config twice changes nothing.
type Config struct {
	// PrivateKey is the node's WireGuard private key.
	PrivateKey wgtypes.Key
	// ListenPort is the UDP port WireGuard listens on; 0 picks a free one
	// on the first Reconfig and keeps it afterwards.
	ListenPort int
	// Addresses are this node's overlay addresses (a /32 and a /128). The
	// device routes 100.64.0.0/10 and the network's ULA /48 (Routes).
	Addresses []netip.Prefix
	// Routes are the overlay prefixes sent into the device.
	Routes []netip.Prefix
	// Peers are every peer the node may see, sorted by key.
	Peers []Peer
	// Rules protect the node: inbound packets that start a flow must match
	// one. Empty means nothing new gets in (default deny).
	Rules []wire.FilterRule
}

// Peer is one WireGuard peer.
type Peer struct {
	Key        wire.NodePublic
	AllowedIPs []netip.Prefix
	// Endpoint is where to send handshakes; invalid means unknown (the
	// peer must reach us first).
	Endpoint netip.AddrPort
	// Keepalive is the persistent keepalive; zero disables it.
	Keepalive time.Duration
}
