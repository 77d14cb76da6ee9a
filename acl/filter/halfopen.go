package filter

import (
	"math/bits"
	"sync/atomic"
)

// Half-open inbound TCP connections. An inbound SYN that a rule admits
// creates no flow entry: the filter only notes, in halfOpenTable, that
// this connection's SYN was admitted, and every later packet of the
// connection that finds no flow entry is judged by the rules again. The
// flow entry is made when the connection shows that it is real: this
// node answers (its SYN-ACK), or the remote side sends anything but a
// SYN. So a new inbound connection costs a rule match and one atomic store
// on its first packet instead of a locked insert, and SYNs that nobody
// answers never evict flows that are in use.
//
// The note decides no verdict, only a reason: a packet of a noted
// connection is AcceptEstablished if the current rules admit it and
// DropRevoked if they no longer do, where an unnoted one would be
// AcceptRule or DropNoRule (or DropExpired). Verdicts, and what flow entry
// is made, come from the current rules alone either way, so the table may
// be lossy: a slot holds one connection's note, a newer one overwrites it,
// and a note names its connection by 50 bits of the flow hash. A note is
// kept for the TCP transitory timeout (at most about 36 minutes), as an
// unanswered connection's flow entry would have been.

// A note's time is kept in halfOpenTimeBits bits, in units of
// 2^halfOpenUnitShift ns (about 268 ms): they wrap after about 73 minutes,
// so a note is kept at most half that long, whatever the TCP transitory
// timeout. The rest of the word is the flow hash's top 50 bits.
const (
	halfOpenUnitShift = 28
	halfOpenTimeBits  = 14
	halfOpenTimeMask  = 1<<halfOpenTimeBits - 1
)

// halfOpenTable holds one word per slot: the flow hash with its low
// halfOpenTimeBits bits replaced by the time the connection's SYN was last
// admitted (in units since the Filter's epoch). 0 is an empty slot. The
// slot is picked by the hash bits just above the time's; a false match
// needs the 37 or more other bits of the hash to agree by chance (about
// once in 10^11 new connections), and costs a reason, never a verdict.
type halfOpenTable struct {
	slots []atomic.Uint64
	mask  uint64
	// ttl is how many time units a note stays valid.
	ttl uint64
}

func newHalfOpenTable(capacity int, transitory int64) halfOpenTable {
	// A note mostly lives from a SYN to this node's SYN-ACK, which the
	// local stack sends at once, so few notes are alive at a time: an
	// eighth of the flow capacity, between 64 and 4,096 slots (32 KiB),
	// keeps the table in the cache, where the atomic store of a new
	// note does not wait for memory.
	n := 1 << bits.Len(uint(min(max(capacity/8, 64), 4096)-1))
	ttl := (uint64(transitory) + 1<<halfOpenUnitShift - 1) >> halfOpenUnitShift
	return halfOpenTable{
		slots: make([]atomic.Uint64, n),
		mask:  uint64(n - 1),
		ttl:   min(max(ttl, 1), halfOpenTimeMask/2),
	}
}

func (t *halfOpenTable) slot(h uint64) *atomic.Uint64 {
	return &t.slots[h>>halfOpenTimeBits&t.mask]
}

// halfOpenNote returns the word noting the connection with flow hash h at
// monotonic time mono.
func halfOpenNote(h uint64, mono int64) uint64 {
	w := h&^halfOpenTimeMask | uint64(mono)>>halfOpenUnitShift&halfOpenTimeMask
	if w == 0 {
		w = 1 // 0 is an empty slot
	}
	return w
}

// has reports whether the connection with flow hash h was noted no longer
// than the transitory timeout before mono.
func (t *halfOpenTable) has(h uint64, mono int64) bool { return t.holds(t.slot(h).Load(), h, mono) }

// holds reports whether slot word w notes the connection with flow hash h
// no longer than the transitory timeout before mono.
func (t *halfOpenTable) holds(w, h uint64, mono int64) bool {
	return w != 0 && w&^halfOpenTimeMask == h&^halfOpenTimeMask &&
		(uint64(mono)>>halfOpenUnitShift-w)&halfOpenTimeMask <= t.ttl
}

// put notes the connection with flow hash h at mono, replacing whatever the
// slot held, and reports whether the slot held a live note of it already.
func (t *halfOpenTable) put(h uint64, mono int64) bool {
	s, w := t.slot(h), halfOpenNote(h, mono)
	old := s.Load()
	if old != w {
		s.Store(w)
	}
	return t.holds(old, h, mono)
}

// clear forgets the note of the connection with flow hash h, if the slot
// holds it.
func (t *halfOpenTable) clear(h uint64) {
	s := t.slot(h)
	if w := s.Load(); w != 0 && w&^halfOpenTimeMask == h&^halfOpenTimeMask {
		s.CompareAndSwap(w, 0)
	}
}

// pureSYN reports whether TCP flags fl open a connection: SYN without ACK
// or RST.
func pureSYN(fl uint8) bool { return fl&(tcpSYN|tcpACK|tcpRST) == tcpSYN }

// newInbound decides about an inbound packet of a tracked kind k (TCP flags
// tcpFlags) whose flow has no entry, given the rules' verdict r about it.
// It returns the packet's reason and whether a flow entry must be made for
// it (with flagInbound and tcpFlagsIn(tcpFlags)). h is the flow's hash.
//
// Only a pure SYN writes (a note); any other packet only reads, so calling
// this twice for one packet that is not a pure SYN gives the same answer.
func (f *Filter) newInbound(k kind, tcpFlags uint8, h uint64, now Instant, r Reason) (Reason, bool) {
	if k != kindTCP {
		return r, r == AcceptRule
	}
	if pureSYN(tcpFlags) {
		if r == AcceptRule && f.half.put(h, now.mono) {
			r = AcceptEstablished // a retransmitted SYN
		}
		return r, false
	}
	if f.half.has(h, now.mono) {
		if r != AcceptRule {
			return DropRevoked, false
		}
		return AcceptEstablished, tcpFlags&tcpRST == 0
	}
	return r, r == AcceptRule && tcpFlags&tcpRST == 0
}
