package netmap

import (
	"slices"

	"github.com/latchnet/latch/wire"
)

// Diff returns the delta that turns prev into next (prev.Apply(delta)
// equals next), or nil if they hold the same content. Both must have
// peers sorted by ID.
func Diff(prev, next *wire.Netmap) *wire.Delta {
	d := &wire.Delta{PrevVersion: prev.Version, Version: next.Version}
	changed := false
	if !NodeEqual(prev.Self, next.Self) {
		self := next.Self
		d.Self = &self
		changed = true
	}
	if !slices.EqualFunc(prev.Rules, next.Rules, ruleEqual) {
		d.Rules = next.Rules
		if d.Rules == nil {
			d.Rules = []wire.FilterRule{}
		}
		d.RulesChanged = true
		changed = true
	}
	i, j := 0, 0
	for i < len(prev.Peers) || j < len(next.Peers) {
		switch {
		case j == len(next.Peers) || i < len(prev.Peers) && prev.Peers[i].ID < next.Peers[j].ID:
			d.Remove = append(d.Remove, prev.Peers[i].ID)
			i++
		case i == len(prev.Peers) || next.Peers[j].ID < prev.Peers[i].ID:
			d.Upsert = append(d.Upsert, next.Peers[j])
			j++
		default:
			if !PeerEqual(prev.Peers[i], next.Peers[j]) {
				d.Upsert = append(d.Upsert, next.Peers[j])
			}
			i++
			j++
		}
	}
	if !changed && len(d.Remove) == 0 && len(d.Upsert) == 0 {
		return nil
	}
	return d
}

// PeerEqual reports whether two peer entries are described identically.
func PeerEqual(a, b wire.Peer) bool {
	return NodeEqual(a.Node, b.Node) && slices.Equal(a.Rules, b.Rules)
}

// NodeEqual reports whether two nodes are described identically.
func NodeEqual(a, b wire.Node) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Key == b.Key && a.Ephemeral == b.Ephemeral &&
		a.Created.Equal(b.Created) && slices.Equal(a.Addresses, b.Addresses) &&
		slices.Equal(a.Endpoints, b.Endpoints) && slices.Equal(a.Tags, b.Tags)
}

func ruleEqual(a, b wire.FilterRule) bool {
	return a.ID == b.ID && a.Expires.Equal(b.Expires) && slices.Equal(a.Sources, b.Sources) &&
		slices.Equal(a.Protocols, b.Protocols) && slices.Equal(a.Ports, b.Ports)
}
