package wire

import (
	"fmt"
	"slices"
	"strings"
)

// Apply returns the netmap that results from applying d to nm. It fails if
// d was computed against another version, in which case the agent must
// fetch a full map. nm is not modified.
func (nm *Netmap) Apply(d *Delta) (*Netmap, error) {
	if d.PrevVersion != nm.Version {
		return nil, fmt.Errorf("delta for version %d, have %d", d.PrevVersion, nm.Version)
	}
	out := &Netmap{Version: d.Version, Self: nm.Self, Rules: nm.Rules}
	if d.Self != nil {
		out.Self = *d.Self
	}
	if d.RulesChanged {
		out.Rules = d.Rules
	}
	drop := make(map[NodeID]bool, len(d.Remove)+len(d.Upsert))
	for _, id := range d.Remove {
		drop[id] = true
	}
	for _, p := range d.Upsert {
		drop[p.ID] = true
	}
	out.Peers = make([]Node, 0, len(nm.Peers)+len(d.Upsert))
	for _, p := range nm.Peers {
		if !drop[p.ID] {
			out.Peers = append(out.Peers, p)
		}
	}
	out.Peers = append(out.Peers, d.Upsert...)
	SortPeers(out.Peers)
	return out, nil
}

// SortPeers orders peers by ID, the canonical order of a Netmap.
func SortPeers(peers []Node) {
	slices.SortFunc(peers, func(a, b Node) int { return strings.Compare(string(a.ID), string(b.ID)) })
}
