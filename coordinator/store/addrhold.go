package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"sync"
)

// An overlay address released by a deleted node may go to another node
// only when no peer can still hold the old node under it. Two kinds of
// peer may:
//
//   - Connected peers (a live netmap stream). The coordinator fans every
//     committed change out to them in netmap-version order, so once it has
//     sent every live stream a netmap at or past the version that removed
//     the node, none of them holds it. This is tracked in memory here
//     (addrHolds): the removal version of every address released since the
//     process started, checked against Options.SyncedVersion. After a
//     restart every stream starts with a full netmap at the current
//     version, so nothing released earlier can be held by a live stream.
//   - Disconnected agents, which keep their last signed netmap for as long
//     as they are cut off. They are covered by the time hold
//     (Options.AddressHold, 7 days) on top of monotonic allocation over the
//     whole /10 (an address comes around again only after ~4 million other
//     enrollments). Even past that, WireGuard's cryptokey routing keeps a
//     stale entry harmless: it names the old node's public key, which no
//     new node has, so no packet is accepted from or delivered to the new
//     holder of the address under the old identity.
//
// allocateAddress skips an index while either hold applies.

// addrHolds maps the address index of every node deleted by this process
// to the netmap version that removed it (or a later one), until every live
// stream was sent that version. Safe for concurrent use.
type addrHolds struct {
	mu sync.Mutex
	v  map[uint32]uint64 // guarded by mu
}

// hold records that idx was released at netmap version ver (or earlier).
func (h *addrHolds) hold(idx uint32, ver uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.v == nil {
		h.v = make(map[uint32]uint64)
	}
	if ver > h.v[idx] {
		h.v[idx] = ver
	}
}

// held reports whether idx was released at a version past synced, and
// forgets it once it no longer is.
func (h *addrHolds) held(idx uint32, synced uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	ver, ok := h.v[idx]
	if !ok {
		return false
	}
	if ver > synced {
		return true
	}
	delete(h.v, idx)
	return false
}

// pending returns how many released addresses still wait for the streams
// (for tests and metrics).
func (h *addrHolds) pending(synced uint64) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for idx, ver := range h.v {
		if ver > synced {
			n++
		} else {
			delete(h.v, idx)
		}
	}
	return n
}

// holdReleasedTx records, within the transaction that deleted n, the
// netmap version that removes it, so its address is not handed out
// before every live stream was sent that version. A rolled-back
// transaction leaves a harmless hold that lifts with the next fan-out.
func (s *SQLite) holdReleasedTx(ctx context.Context, tx *sql.Tx, n Node) error {
	if s.opts.SyncedVersion == nil || !n.IPv4.Is4() {
		return nil
	}
	var ver uint64
	if err := tx.QueryRowContext(ctx, `SELECT netmap_version FROM meta WHERE id = 1`).Scan(&ver); err != nil {
		return err
	}
	b, base := n.IPv4.As4(), poolBase.As4()
	s.holds.hold(binary.BigEndian.Uint32(b[:])-binary.BigEndian.Uint32(base[:]), ver)
	return nil
}

// heldForStreams reports whether index idx waits for live streams to be
// sent the version that released it.
func (s *SQLite) heldForStreams(idx uint32) bool {
	if s.opts.SyncedVersion == nil {
		return false
	}
	return s.holds.held(idx, s.opts.SyncedVersion())
}

// AddressesAwaitingStreams returns how many released addresses are held
// because some live stream was not yet sent the netmap that dropped their
// node. Always 0 without Options.SyncedVersion.
func (s *SQLite) AddressesAwaitingStreams() int {
	if s.opts.SyncedVersion == nil {
		return 0
	}
	return s.holds.pending(s.opts.SyncedVersion())
}
