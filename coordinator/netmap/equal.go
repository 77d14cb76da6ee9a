package netmap

import (
	"slices"

	"github.com/latchnet/latch/wire"
)

// PeerEqual reports whether two peer entries are described identically.
func PeerEqual(a, b wire.Peer) bool {
	return NodeEqual(a.Node, b.Node) && slices.Equal(a.Rules, b.Rules)
}

// NodeEqual reports whether two nodes are described identically.
func NodeEqual(a, b wire.Node) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Key == b.Key && a.Ephemeral == b.Ephemeral &&
		a.Created.Equal(b.Created) && a.KeyExpiry.Equal(b.KeyExpiry) && slices.Equal(a.Addresses, b.Addresses) &&
		slices.Equal(a.Endpoints, b.Endpoints) && slices.Equal(a.Tags, b.Tags)
}

func ruleEqual(a, b wire.FilterRule) bool {
	return a.ID == b.ID && a.Expires.Equal(b.Expires) && slices.Equal(a.Sources, b.Sources) &&
		slices.Equal(a.Protocols, b.Protocols) && slices.Equal(a.Ports, b.Ports)
}
