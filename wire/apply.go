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
	out.Peers = make([]Peer, 0, len(nm.Peers)+len(d.Upsert))
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
func SortPeers(peers []Peer) {
	slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(string(a.ID), string(b.ID)) })
}

// SortNodes orders nodes by ID.
func SortNodes(nodes []Node) {
	slices.SortFunc(nodes, func(a, b Node) int { return strings.Compare(string(a.ID), string(b.ID)) })
}

// PeerSources returns rules with each rule's Sources extended by the
// overlay addresses of every peer whose Rules name it: the address-level
// rule set a packet filter enforces. Rules no peer names keep only their
// own Sources. rules and peers are not modified.
func PeerSources(rules []FilterRule, peers []Peer) []FilterRule {
	if rules == nil {
		return nil
	}
	byID := make(map[string]int, len(rules))
	out := make([]FilterRule, len(rules))
	for i, r := range rules {
		out[i] = r
		out[i].Sources = slices.Clone(r.Sources)
		byID[r.ID] = i
	}
	for _, p := range peers {
		for _, id := range p.Rules {
			if i, ok := byID[id]; ok {
				out[i].Sources = append(out[i].Sources, p.Addresses...)
			}
		}
	}
	return out
}
