package netmap

import (
	"slices"

	"github.com/latchnet/latch/wire"
)

// state is a netmap as one subscriber holds it, indexed for patching: a
// change to one peer costs one map operation, not a pass over every peer.
type state struct {
	version uint64
	self    wire.Node
	rules   []wire.FilterRule
	peers   map[wire.NodeID]wire.Peer
	// digests holds wire.PeerDigest of every entry of peers, filled
	// lazily by digest: a nil entry map means none are known yet.
	digests map[wire.NodeID][32]byte
}

func newState(nm *wire.Netmap) *state {
	st := &state{version: nm.Version, self: nm.Self, rules: nm.Rules, peers: make(map[wire.NodeID]wire.Peer, len(nm.Peers))}
	for _, p := range nm.Peers {
		st.peers[p.ID] = p
	}
	return st
}

// update makes st nm and returns the delta from the old st to nm, or nil
// (leaving st as it was) if they hold the same content.
func (st *state) update(nm *wire.Netmap) *wire.Delta {
	d := &wire.Delta{PrevVersion: st.version, Version: nm.Version}
	changed := false
	if !NodeEqual(st.self, nm.Self) {
		self := nm.Self
		d.Self = &self
		changed = true
	}
	if !slices.EqualFunc(st.rules, nm.Rules, ruleEqual) {
		d.Rules = nm.Rules
		if d.Rules == nil {
			d.Rules = []wire.FilterRule{}
		}
		d.RulesChanged = true
		changed = true
	}
	next := make(map[wire.NodeID]wire.Peer, len(nm.Peers))
	for _, p := range nm.Peers {
		next[p.ID] = p
		if old, ok := st.peers[p.ID]; !ok || !PeerEqual(old, p) {
			d.Upsert = append(d.Upsert, p)
		}
	}
	for id := range st.peers {
		if _, ok := next[id]; !ok {
			d.Remove = append(d.Remove, id)
		}
	}
	slices.Sort(d.Remove)
	if !changed && len(d.Upsert) == 0 && len(d.Remove) == 0 {
		return nil
	}
	st.version, st.self, st.rules, st.peers = nm.Version, nm.Self, nm.Rules, next
	for _, p := range d.Upsert {
		delete(st.digests, p.ID)
	}
	for _, id := range d.Remove {
		delete(st.digests, id)
	}
	return d
}

// patch brings st's entries for ids (sorted) to what entry says at
// version and returns the delta, or nil if none of them changed.
func (st *state) patch(version uint64, ids []wire.NodeID, entry func(wire.NodeID) (wire.Peer, bool)) *wire.Delta {
	d := &wire.Delta{PrevVersion: st.version, Version: version}
	for _, id := range ids {
		p, ok := entry(id)
		old, had := st.peers[id]
		switch {
		case ok && (!had || !PeerEqual(old, p)):
			d.Upsert = append(d.Upsert, p)
			st.peers[id] = p
			delete(st.digests, id)
		case !ok && had:
			d.Remove = append(d.Remove, id)
			delete(st.peers, id)
			delete(st.digests, id)
		}
	}
	if len(d.Upsert) == 0 && len(d.Remove) == 0 {
		return nil
	}
	st.version = version
	return d
}

// digest returns wire's digest of st as node's netmap. Peer digests are
// kept between calls, so a change re-encodes only the changed entries.
func (st *state) digest(node wire.NodeID) [32]byte {
	if st.digests == nil {
		st.digests = make(map[wire.NodeID][32]byte, len(st.peers))
	}
	ids := make([]wire.NodeID, 0, len(st.peers))
	for id := range st.peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ds := make([][32]byte, len(ids))
	for i, id := range ids {
		d, ok := st.digests[id]
		if !ok {
			p := st.peers[id]
			d = wire.PeerDigest(&p)
			st.digests[id] = d
		}
		ds[i] = d
	}
	return wire.NetmapDigest(node, st.version, &st.self, st.rules, ds)
}

// netmap returns st as a Netmap (for tests).
func (st *state) netmap() *wire.Netmap {
	nm := &wire.Netmap{Version: st.version, Self: st.self, Rules: st.rules, Peers: make([]wire.Peer, 0, len(st.peers))}
	for _, p := range st.peers {
		nm.Peers = append(nm.Peers, p)
	}
	wire.SortPeers(nm.Peers)
	return nm
}
