package filter

import (
	"math/bits"
	"math/rand/v2"
	"sync"
	"time"
)

// flowKey names a flow from this node's side, so that both directions of
// one exchange give the same key: local is this node's address, remote the
// peer's. It is five machine words: building, hashing and comparing one
// never allocates and never stalls on partial stores.
type flowKey struct {
	local, remote addr
	// meta packs the IP version, the protocol and the local and remote
	// ports (or echo identifiers); see packMeta.
	meta uint64
}

func packMeta(v, proto uint8, lport, rport uint16) uint64 {
	return uint64(v)<<40 | uint64(proto)<<32 | uint64(lport)<<16 | uint64(rport)
}

func (k *flowKey) v() uint8      { return uint8(k.meta >> 40) }
func (k *flowKey) proto() uint8  { return uint8(k.meta >> 32) }
func (k *flowKey) lport() uint16 { return uint16(k.meta >> 16) }

// keyOut and keyIn set k to the key of p as seen leaving or entering the
// node. They fill k word by word in place on purpose: parse stored the
// addresses word by word, and a 16-byte copy of two fresh 8-byte stores
// stalls store forwarding (measured at about a fifth of the whole
// established-flow path).
func keyOut(p *packet, k *flowKey) {
	k.local.hi, k.local.lo = p.src.hi, p.src.lo
	k.remote.hi, k.remote.lo = p.dst.hi, p.dst.lo
	k.meta = packMeta(p.v, p.proto, p.srcPort, p.dstPort)
}

func keyIn(p *packet, k *flowKey) {
	k.local.hi, k.local.lo = p.dst.hi, p.dst.lo
	k.remote.hi, k.remote.lo = p.src.hi, p.src.lo
	k.meta = packMeta(p.v, p.proto, p.dstPort, p.srcPort)
}

// Flow entry flags.
const (
	// flagInbound: the remote side started the flow, so a rule admitted
	// it and every rule change must admit it again.
	flagInbound uint8 = 1 << iota
	// flagRevoked: an inbound flow that the current rules no longer admit.
	// The entry stays (as a tombstone) so that this node's own packets of
	// the flow cannot revive it as if this node had started it.
	flagRevoked
	// flagReplied: a packet went the other way from the one that started
	// the flow.
	flagReplied
	flagFinOut
	flagFinIn
	flagRST
)

type flowEntry struct {
	key  flowKey
	hash uint64
	// lastSeen is the monotonic time of the last packet, in nanoseconds
	// since the Filter was made.
	lastSeen int64
	// gen is the rule-set generation an inbound flow was last checked
	// against; expiry is when the rules that admitted it end (wall clock,
	// Unix nanoseconds; 0: never).
	gen    uint64
	expiry int64
	// prev and next link the shard's entries from most to least recently
	// seen; -1 ends the list. next also links the free list.
	prev, next int32
	flags      uint8
}

// closing reports whether a TCP flow has been reset or closed both ways.
func (e *flowEntry) closing() bool {
	return e.flags&flagRST != 0 || e.flags&(flagFinIn|flagFinOut) == flagFinIn|flagFinOut
}

// Timeouts bound how long an idle flow is remembered.
type Timeouts struct {
	// TCPEstablished applies to TCP flows that saw packets both ways and
	// are not closing.
	TCPEstablished time.Duration
	// TCPTransitory applies to TCP flows not yet answered, or reset, or
	// closed both ways.
	TCPTransitory time.Duration
	UDP           time.Duration
	ICMP          time.Duration
}

// DefaultTimeouts returns the timeouts a zero Options gets.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCPEstablished: 24 * time.Hour,
		TCPTransitory:  2 * time.Minute,
		UDP:            2 * time.Minute,
		ICMP:           30 * time.Second,
	}
}

// flowTable is a bounded, sharded table of flows. Each shard is a fixed
// array of entries with an open-addressing index and an LRU list; when a
// shard is full its least recently seen flow makes room. Nothing in it
// allocates after newFlowTable.
type flowTable struct {
	seed      [5]uint64
	shardBits uint
	shards    []shard
	// timeouts in nanoseconds, indexed by what timeout() picks.
	tcpEst, tcpTrans, udp, icmp int64
}

type shard struct {
	mu sync.Mutex
	// Guarded by mu:
	entries []flowEntry
	// index maps hash slots to entry index + 1; 0 is an empty slot. It is
	// at least twice as long as entries, so probes stay short.
	index      []int32
	mask       uint64
	head, tail int32 // LRU ends, -1 when empty
	free       int32 // free-list head, -1 when empty
	// fresh counts entries ever used; entries[fresh:] have never been
	// touched, so an idle table costs address space, not memory.
	fresh int32
	n     int

	_ [64]byte // keep neighbouring shards' locks off one cache line
}

const maxShards = 64

func newFlowTable(capacity int, t Timeouts) *flowTable {
	nShards := maxShards
	for nShards > 1 && capacity/nShards < 16 {
		nShards /= 2
	}
	per := max(1, (capacity+nShards-1)/nShards)
	ft := &flowTable{
		seed:      [5]uint64{rand.Uint64(), rand.Uint64(), rand.Uint64(), rand.Uint64(), rand.Uint64()},
		shardBits: uint(bits.TrailingZeros(uint(nShards))),
		shards:    make([]shard, nShards),
		tcpEst:    int64(t.TCPEstablished),
		tcpTrans:  int64(t.TCPTransitory),
		udp:       int64(t.UDP),
		icmp:      int64(t.ICMP),
	}
	slots := 1 << bits.Len(uint(per*2-1))
	for i := range ft.shards {
		s := &ft.shards[i]
		s.entries = make([]flowEntry, per)
		s.index = make([]int32, slots)
		s.mask = uint64(slots - 1)
		s.head, s.tail, s.free = -1, -1, -1
	}
	return ft
}

// hash mixes the key with per-table random seeds, so a peer cannot aim
// its flows at one probe chain. Two independent 128-bit multiplies keep the
// dependency chain short.
func (ft *flowTable) hash(k *flowKey) uint64 {
	a := mix(k.local.lo^ft.seed[0], k.remote.lo^ft.seed[1])
	b := mix(k.local.hi^ft.seed[2], k.remote.hi^ft.seed[3])
	return mix(a^k.meta, b^ft.seed[4])
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func (ft *flowTable) shardFor(h uint64) *shard {
	return &ft.shards[h>>(64-ft.shardBits)&(uint64(len(ft.shards))-1)]
}

// timeout returns how long e may stay idle.
func (ft *flowTable) timeout(e *flowEntry) int64 {
	switch e.key.proto() {
	case protoTCP:
		if e.flags&flagReplied != 0 && !e.closing() {
			return ft.tcpEst
		}
		return ft.tcpTrans
	case protoUDP:
		return ft.udp
	}
	return ft.icmp
}

// findLocked returns the index of the live entry for k, or -1. An entry
// that timed out is removed and not returned.
func (ft *flowTable) findLocked(s *shard, k *flowKey, h uint64, now int64) int32 {
	for i := h & s.mask; ; i = (i + 1) & s.mask {
		x := s.index[i]
		if x == 0 {
			return -1
		}
		e := &s.entries[x-1]
		if e.hash == h && e.key == *k {
			if now-e.lastSeen > ft.timeout(e) {
				s.removeLocked(x - 1)
				return -1
			}
			return x - 1
		}
	}
}

// insertLocked adds a fresh entry for k, evicting the least recently seen
// flow if the shard is full, and returns its index. k must not be present.
func (s *shard) insertLocked(k *flowKey, h uint64, now int64) int32 {
	var x int32
	switch {
	case s.free >= 0:
		x = s.free
		s.free = s.entries[x].next
	case int(s.fresh) < len(s.entries):
		x = s.fresh
		s.fresh++
	default:
		x = s.tail
		s.removeLocked(x)
		s.free = s.entries[x].next
	}
	e := &s.entries[x]
	*e = flowEntry{key: *k, hash: h, lastSeen: now, prev: -1, next: s.head}
	if s.head >= 0 {
		s.entries[s.head].prev = x
	}
	s.head = x
	if s.tail < 0 {
		s.tail = x
	}
	i := h & s.mask
	for s.index[i] != 0 {
		i = (i + 1) & s.mask
	}
	s.index[i] = x + 1
	s.n++
	return x
}

// touchLocked records a packet on entry x at now.
func (s *shard) touchLocked(x int32, now int64) {
	e := &s.entries[x]
	e.lastSeen = now
	if s.head == x {
		return
	}
	s.unlinkLocked(x)
	e.prev, e.next = -1, s.head
	s.entries[s.head].prev = x
	s.head = x
	if s.tail < 0 {
		s.tail = x
	}
}

func (s *shard) unlinkLocked(x int32) {
	e := &s.entries[x]
	if e.prev >= 0 {
		s.entries[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.entries[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
}

// removeLocked deletes entry x from the index (shifting later probes back
// so that no tombstones are needed), the LRU list, and returns it to the
// free list.
func (s *shard) removeLocked(x int32) {
	e := &s.entries[x]
	i := e.hash & s.mask
	for s.index[i] != x+1 {
		i = (i + 1) & s.mask
	}
	for j := i; ; {
		j = (j + 1) & s.mask
		y := s.index[j]
		if y == 0 {
			break
		}
		home := s.entries[y-1].hash & s.mask
		// The entry at j may move to the hole at i unless its home slot
		// lies cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			s.index[i] = y
			i = j
		}
	}
	s.index[i] = 0
	s.unlinkLocked(x)
	e.flags = 0
	e.next = s.free
	s.free = x
	s.n--
}

// len returns the number of entries, live or timed out but not yet removed.
func (ft *flowTable) len() int {
	n := 0
	for i := range ft.shards {
		s := &ft.shards[i]
		s.mu.Lock()
		n += s.n
		s.mu.Unlock()
	}
	return n
}
