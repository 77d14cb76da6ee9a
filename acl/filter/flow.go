package filter

import (
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
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

// closing reports whether flags fl say a TCP flow has been reset or closed
// both ways.
func closing(fl uint8) bool {
	return fl&flagRST != 0 || fl&(flagFinIn|flagFinOut) == flagFinIn|flagFinOut
}

// A flow's state is one word, so that a reader without the lock sees the
// flags, the rule generation and the admitting rule of one moment:
//
//	bits  0-7   flags
//	bits  8-31  ref: 0 if the rules that admitted an inbound flow never end,
//	            else 1 + the index in the rule set of the admitting rule
//	            that ends last (refRematch: too many rules to say; match
//	            again on every packet)
//	bits 32-63  the low 32 bits of the rule-set generation an inbound flow
//	            was last checked against
//
// ref and gen mean something only for inbound flows, and ref only in the
// rule set whose generation gen names.
type flowState = uint64

const refRematch = 1<<24 - 1

func mkState(fl uint8, ref uint32, gen uint64) flowState {
	return uint64(fl) | uint64(ref&refRematch)<<8 | uint64(uint32(gen))<<32
}

func stFlags(st flowState) uint8 { return uint8(st) }
func stRef(st flowState) uint32  { return uint32(st>>8) & refRematch }
func stGen(st flowState) uint32  { return uint32(st >> 32) }

// withFlags returns st with its flags replaced by fl.
func withFlags(st flowState, fl uint8) flowState { return st&^0xff | uint64(fl) }

// keyWords returns the words a flow entry stores for k: for IPv6 local.hi,
// local.lo, remote.hi, remote.lo and meta; for IPv4 (whose addresses fit
// in 32 bits) 0, local | remote<<32, 0, 0 and meta. The meta word holds
// the IP version, so the two forms never meet, and an IPv4 key is checked
// with two words - the same word that its hash starts from.
func keyWords(k *flowKey) [5]uint64 {
	if k.v() == 4 {
		return [5]uint64{0, k.local.lo | k.remote.lo<<32, 0, 0, k.meta}
	}
	return [5]uint64{k.local.hi, k.local.lo, k.remote.hi, k.remote.lo, k.meta}
}

// flowEntry is one flow. The first seven words are read without the lock
// by the packet path and written (atomically) only with the shard's lock
// held; the rest is the writers' own. It is exactly one cache line.
type flowEntry struct {
	// key holds keyWords of the flow's key.
	key   [5]atomic.Uint64
	state atomic.Uint64
	// seen is the monotonic time of the last packet (in nanoseconds since
	// the Filter was made), to within the table's tick: the packet path
	// writes it only when it moved by a tick or more, so that a busy flow
	// costs no writes.
	seen atomic.Int64

	// Guarded by the shard's mu:
	home uint32 // the index slot the key hashes to
	inc  uint32 // incarnation: bumped every time the entry is reused
}

// keyIs reports whether e holds key words w.
func (e *flowEntry) keyIs(w *[5]uint64) bool {
	return e.key[4].Load() == w[4] && e.key[1].Load() == w[1] && e.key[3].Load() == w[3] &&
		e.key[2].Load() == w[2] && e.key[0].Load() == w[0]
}

// flowKeyOf returns the key e holds.
func (e *flowEntry) flowKeyOf() flowKey {
	k := flowKey{meta: e.key[4].Load()}
	if k.v() == 4 {
		w := e.key[1].Load()
		k.local.lo, k.remote.lo = w&0xffffffff, w>>32
		return k
	}
	k.local = addr{hi: e.key[0].Load(), lo: e.key[1].Load()}
	k.remote = addr{hi: e.key[2].Load(), lo: e.key[3].Load()}
	return k
}

// storeIfChanged stores v in w unless it already holds it: a load costs
// far less than an atomic store, and a reused entry mostly keeps its local
// address, its state and often its remote address.
func storeIfChanged(w *atomic.Uint64, v uint64) {
	if w.Load() != v {
		w.Store(v)
	}
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

// seenTick is how far a flow's last-seen time may lag behind its last
// packet: the packet path refreshes it (under the lock) only once it is
// this old. Idle timeouts are honoured to within it.
const seenTick = int64(time.Millisecond)

// flowTable is a bounded, sharded table of flows. Each shard is a fixed
// array of entries with an open-addressing index and an LRU list; when a
// shard is full its least recently seen flow makes room. Nothing in it
// allocates after newFlowTable.
//
// Readers take no lock: lookup walks the index and reads the entry with
// atomic loads, and trusts what it read only if the index slot still holds
// the same word afterwards. Writers hold the shard's lock. A slot word
// carries the entry's incarnation, so an entry freed and reused for another
// key while a reader looks at it never passes for the old one; and a
// removal that moves other keys' slots marks the shard's seq odd while it
// does, so that a reader can tell a true miss from one it made by looking
// while keys moved.
type flowTable struct {
	// Read by the lock-free path; fixed after newFlowTable.
	//
	// index and entries hold every shard's slots and entries: shard i
	// has slots [i<<slotBits, (i+1)<<slotBits) and a range of entries.
	// A key's home slot is its hash & indexMask, which also picks its
	// shard; slot words hold indexes into entries. So a packet finds its
	// slot and entry from the hash alone, without loading the shard.
	index     []atomic.Uint64
	entries   []flowEntry
	indexMask uint64
	slotMask  uint64 // a shard's slots: the low slotBits bits
	slotBits  uint8
	seed      [3]uint64
	// hi4 is the part of hash that IPv4 keys, whose high words are 0,
	// all share.
	hi4    uint64
	shards []shard
	// lru links each shard's entries from most to least recently seen;
	// -1 ends the list. next also links the free list. Guarded by the
	// mu of the shard owning the entry.
	lru []lruLink
	// timeouts in nanoseconds, indexed by what timeout() picks.
	tcpEst, tcpTrans, udp, icmp int64
	// tick is seenTick, or the shortest timeout if that is shorter: a
	// flow seen less than a tick ago has certainly not timed out.
	tick int64
}

// Index slot words: the entry index in the low slotIdxBits bits, then the
// entry's incarnation, then a tag from the key's hash with the top bit
// set. 0 is an empty slot. w>>slotTagShift == slotTag(h) says whether
// slot word w may hold a key whose hash is h.
const (
	slotIdxBits  = 24
	slotIdxMask  = 1<<slotIdxBits - 1
	slotIncBits  = 16
	slotIncMask  = 1<<slotIncBits - 1
	slotTagShift = slotIdxBits + slotIncBits
	slotTagBits  = 64 - slotTagShift

	// maxFlowCapacity is the largest table newFlowTable builds.
	maxFlowCapacity = slotIdxMask - maxShards
)

// slotTag takes the tag from the top bits of the hash; the slot comes from
// the low ones (fewer than 32).
func slotTag(h uint64) uint64 { return 1<<(slotTagBits-1) | h>>(64-slotTagBits+1) }

func slotWord(x int32, inc uint32, h uint64) uint64 {
	return uint64(x) | uint64(inc&slotIncMask)<<slotIdxBits | slotTag(h)<<slotTagShift
}

// slotEntry returns the entry index slot word w (not empty) holds.
func slotEntry(w uint64) int32 { return int32(w & slotIdxMask) }

// slotEntryIndex is slotEntry as an unsigned index.
func slotEntryIndex(w uint64) uint64 { return w & slotIdxMask }

type lruLink struct{ prev, next int32 }

// shard is one lock's worth of the table. Entry indexes (x) are indexes
// into the table's entries, which entries and lru here share; the shard
// owns entries [first, end).
type shard struct {
	// Read without the lock; fixed after newFlowTable but for seq.
	index   []atomic.Uint64 // this shard's slots; at least twice its entries
	entries []flowEntry
	mask    uint64
	// seq is odd while removeLocked moves index slots, and counts such
	// moves. Written with mu held.
	seq atomic.Uint64

	// The fields above fill one cache line, read by every packet; the
	// ones below, written by every insert, fill another.

	mu sync.Mutex
	// Guarded by mu:
	lru        []lruLink
	head, tail int32 // LRU ends, -1 when empty
	free       int32 // free-list head, -1 when empty
	// fresh is the next entry never used; entries[fresh:end] have never
	// been touched, so an idle table costs address space, not memory.
	fresh      int32
	first, end int32
	n          int
}

const maxShards = 64

func newFlowTable(capacity int, t Timeouts) *flowTable {
	capacity = min(capacity, maxFlowCapacity)
	nShards := maxShards
	for nShards > 1 && capacity/nShards < 16 {
		nShards /= 2
	}
	per := max(1, (capacity+nShards-1)/nShards)
	slotBits := bits.Len(uint(per*2 - 1))
	ft := &flowTable{
		index:     make([]atomic.Uint64, nShards<<slotBits),
		entries:   make([]flowEntry, nShards*per),
		indexMask: uint64(nShards<<slotBits - 1),
		slotMask:  uint64(1<<slotBits - 1),
		slotBits:  uint8(slotBits),
		seed:      [3]uint64{rand.Uint64(), rand.Uint64(), rand.Uint64()},
		shards:    make([]shard, nShards),
		lru:       make([]lruLink, nShards*per),
		tcpEst:    int64(t.TCPEstablished),
		tcpTrans:  int64(t.TCPTransitory),
		udp:       int64(t.UDP),
		icmp:      int64(t.ICMP),
	}
	ft.hi4 = ft.hiHash(0, 0)
	ft.tick = min(seenTick, ft.tcpEst, ft.tcpTrans, ft.udp, ft.icmp)
	for i := range ft.shards {
		s := &ft.shards[i]
		s.index = ft.index[i<<slotBits : (i+1)<<slotBits]
		s.entries = ft.entries
		s.lru = ft.lru
		s.mask = uint64(1<<slotBits - 1)
		s.first = int32(i * per)
		s.end = s.first + int32(per)
		s.fresh = s.first
		s.head, s.tail, s.free = -1, -1, -1
	}
	return ft
}

// hash mixes the key with per-table random seeds, so a peer cannot aim
// its flows at one probe chain. The high address words (0 for IPv4) are
// mixed apart, so an IPv4 key costs one 128-bit multiply on the packet's
// critical path.
func (ft *flowTable) hash(k *flowKey) uint64 {
	return ft.loHash(k.local.lo, k.remote.lo, k.meta, ft.hiHash(k.local.hi, k.remote.hi))
}

func (ft *flowTable) hiHash(local, remote uint64) uint64 {
	return mix(local^ft.seed[0], remote^ft.seed[1])
}

func (ft *flowTable) loHash(local, remote, meta, hi uint64) uint64 {
	return mix(local^bits.RotateLeft64(remote, 32)^hi, meta^ft.seed[2])
}

// hash4 is hash for an IPv4 key whose key word (see keyWords) is kw.
func (ft *flowTable) hash4(kw, meta uint64) uint64 { return mix(kw^ft.hi4, meta^ft.seed[2]) }

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func (ft *flowTable) shardOf(h uint64) uint64 { return h & ft.indexMask >> (ft.slotBits & 63) }

func (ft *flowTable) shardFor(h uint64) *shard { return &ft.shards[ft.shardOf(h)] }

// timeoutOf returns how long a flow whose key has meta word meta and
// flags fl may stay idle.
func (ft *flowTable) timeoutOf(meta uint64, fl uint8) int64 {
	switch uint8(meta >> 32) {
	case protoTCP:
		if fl&flagReplied != 0 && !closing(fl) {
			return ft.tcpEst
		}
		return ft.tcpTrans
	case protoUDP:
		return ft.udp
	}
	return ft.icmp
}

// probe finishes a lock-free lookup whose home slot i held w, which does
// not carry tag tag. It returns the slot and word of the next candidate
// with that tag (the caller checks its key), or a zero word and whether
// that proves the key absent (see shard.lookup): an empty home slot does;
// else the walk starts again at home after reading the shard's seq (a key
// shifted into the home slot meanwhile must not be missed) and counts only
// if seq shows no shifting meanwhile.
func (ft *flowTable) probe(i, w, tag uint64) (slot, word uint64, missing bool) {
	if w == 0 {
		return i, 0, true
	}
	s := &ft.shards[i>>(ft.slotBits&63)]
	q := s.seq.Load()
	for range 16 {
		w = ft.index[i].Load()
		if w == 0 {
			return i, 0, q&1 == 0 && s.seq.Load() == q
		}
		if w>>slotTagShift == tag {
			return i, w, false
		}
		i = i&^ft.slotMask | (i+1)&ft.slotMask
	}
	return i, 0, false
}

// lookupResult says what lookup found.
type lookupResult uint8

const (
	// absent: the key was in the table at no moment during the lookup.
	absent lookupResult = iota
	// found: st and seen are one consistent reading of the key's entry.
	found
	// unsure: the table changed under the lookup; ask again with the lock.
	unsure
)

// lookup finds k (whose hash is h) in shard s without taking its lock. It
// does not check timeouts.
//
// An empty home slot proves k absent: removeLocked never empties a slot
// in the middle of a probe chain, only the hole its shifting leaves at the
// end. A longer walk may step over a key that a removal shifts back behind
// it, so its miss counts only if seq shows no such shifting meanwhile.
func (s *shard) lookup(k *flowKey, h uint64) (st flowState, seen int64, res lookupResult) {
	kw := keyWords(k)
	q := s.seq.Load()
	tag := slotTag(h)
	mask := s.mask
	i := h & mask
	for n := range len(s.index) {
		w := s.index[i].Load()
		if w == 0 {
			if n > 0 && (q&1 != 0 || s.seq.Load() != q) {
				return 0, 0, unsure
			}
			return 0, 0, absent
		}
		if w>>slotTagShift == tag {
			e := &s.entries[slotEntry(w)]
			if e.keyIs(&kw) {
				st, seen = e.state.Load(), e.seen.Load()
				if s.index[i].Load() != w {
					return 0, 0, unsure
				}
				return st, seen, found
			}
		}
		i = (i + 1) & mask
	}
	return 0, 0, unsure
}

// findLocked returns the index of the live entry for k, or -1. An entry
// that timed out is removed and not returned.
func (ft *flowTable) findLocked(s *shard, k *flowKey, h uint64, now int64) int32 {
	kw := keyWords(k)
	return ft.findWordsLocked(s, &kw, h, now)
}

// findWordsLocked is findLocked for the key with key words kw.
func (ft *flowTable) findWordsLocked(s *shard, kw *[5]uint64, h uint64, now int64) int32 {
	tag := slotTag(h)
	for i := h & s.mask; ; i = (i + 1) & s.mask {
		w := s.index[i].Load()
		if w == 0 {
			return -1
		}
		if w>>slotTagShift != tag {
			continue
		}
		x := slotEntry(w)
		e := &s.entries[x]
		if e.keyIs(kw) {
			if now-e.seen.Load() > ft.timeoutOf(kw[4], stFlags(e.state.Load())) {
				s.removeLocked(x)
				return -1
			}
			return x
		}
	}
}

// insertLocked adds an entry for k with state st, evicting the least
// recently seen flow if the shard is full, and returns its index. k must
// not be present.
func (s *shard) insertLocked(k *flowKey, h uint64, now int64, st flowState) int32 {
	kw := keyWords(k)
	return s.insertWordsLocked(&kw, h, now, st)
}

// insertWordsLocked is insertLocked for the key with key words w.
func (s *shard) insertWordsLocked(w *[5]uint64, h uint64, now int64, st flowState) int32 {
	var x int32
	switch {
	case s.free >= 0:
		x = s.free
		s.free = s.lru[x].next
	case s.fresh < s.end:
		x = s.fresh
		s.fresh++
	default:
		x = s.tail
		s.removeLocked(x)
		s.free = s.lru[x].next
	}
	// The entry is in no index slot now, so no reader can trust what it
	// reads of it until the slot word below publishes it.
	e := &s.entries[x]
	storeIfChanged(&e.key[0], w[0])
	storeIfChanged(&e.key[1], w[1])
	storeIfChanged(&e.key[2], w[2])
	storeIfChanged(&e.key[3], w[3])
	storeIfChanged(&e.key[4], w[4])
	storeIfChanged(&e.state, st)
	if e.seen.Load() != now {
		e.seen.Store(now)
	}
	e.inc++
	e.home = uint32(h & s.mask)

	s.lru[x] = lruLink{prev: -1, next: s.head}
	if s.head >= 0 {
		s.lru[s.head].prev = x
	}
	s.head = x
	if s.tail < 0 {
		s.tail = x
	}
	i := h & s.mask
	for s.index[i].Load() != 0 {
		i = (i + 1) & s.mask
	}
	s.index[i].Store(slotWord(x, e.inc, h))
	s.n++
	return x
}

// touchLocked records a packet on entry x at now.
func (s *shard) touchLocked(x int32, now int64) {
	e := &s.entries[x]
	if now > e.seen.Load() {
		e.seen.Store(now)
	}
	if s.head == x {
		return
	}
	s.unlinkLocked(x)
	s.lru[x] = lruLink{prev: -1, next: s.head}
	s.lru[s.head].prev = x
	s.head = x
	if s.tail < 0 {
		s.tail = x
	}
}

// setStateLocked stores st as entry x's state.
func (s *shard) setStateLocked(x int32, st flowState) { storeIfChanged(&s.entries[x].state, st) }

func (s *shard) unlinkLocked(x int32) {
	l := &s.lru[x]
	if l.prev >= 0 {
		s.lru[l.prev].next = l.next
	} else {
		s.head = l.next
	}
	if l.next >= 0 {
		s.lru[l.next].prev = l.prev
	} else {
		s.tail = l.prev
	}
}

// removeLocked deletes entry x from the index (shifting later probes back
// so that no tombstones are needed), the LRU list, and returns it to the
// free list.
func (s *shard) removeLocked(x int32) {
	i := uint64(s.entries[x].home)
	for w := s.index[i].Load(); w == 0 || slotEntry(w) != x; w = s.index[i].Load() {
		i = (i + 1) & s.mask
	}
	moved := false
	for j := i; ; {
		j = (j + 1) & s.mask
		y := s.index[j].Load()
		if y == 0 {
			break
		}
		home := uint64(s.entries[slotEntry(y)].home)
		// The entry at j may move to the hole at i unless its home slot
		// lies cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			if !moved {
				// A reader walking the probe chain now could step over
				// the moving key; seq tells it so.
				s.seq.Add(1)
				moved = true
			}
			s.index[i].Store(y)
			i = j
		}
	}
	s.index[i].Store(0)
	if moved {
		s.seq.Add(1)
	}
	s.unlinkLocked(x)
	s.lru[x].next = s.free
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

// forgetGens clears the rule-set generation of every inbound flow, so that
// each is checked against the rules again before its next packet passes.
// SetRules calls it when the 32-bit generation a flow's state holds wraps
// around, so that an old generation can never pass for the current one.
func (ft *flowTable) forgetGens() {
	for i := range ft.shards {
		s := &ft.shards[i]
		s.mu.Lock()
		for x := s.head; x >= 0; x = s.lru[x].next {
			st := s.entries[x].state.Load()
			if stFlags(st)&flagInbound != 0 {
				s.setStateLocked(x, st&(1<<32-1))
			}
		}
		s.mu.Unlock()
	}
}
