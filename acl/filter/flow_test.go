package filter

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFlowTableAgreesWithMap drives one shard through random inserts,
// lookups, touches and removals (including evictions of the least
// recently seen entry) and checks it against a map plus an explicit LRU
// order.
func TestFlowTableAgreesWithMap(t *testing.T) {
	const capacity = 16
	ft := newFlowTable(capacity, DefaultTimeouts())
	if len(ft.shards) != 1 {
		t.Fatalf("%d shards for capacity %d, want 1", len(ft.shards), capacity)
	}
	s := &ft.shards[0]
	rng := rand.New(rand.NewPCG(1, 2))
	ref := map[flowKey]bool{}
	var lru []flowKey // most recent first
	moveFront := func(k flowKey) {
		for i, x := range lru {
			if x == k {
				lru = append(lru[:i], lru[i+1:]...)
				break
			}
		}
		lru = append([]flowKey{k}, lru...)
	}
	drop := func(k flowKey) {
		delete(ref, k)
		for i, x := range lru {
			if x == k {
				lru = append(lru[:i], lru[i+1:]...)
				return
			}
		}
	}
	key := func() flowKey {
		// Few distinct keys, so operations often hit existing ones.
		return flowKey{local: addr{lo: uint64(rng.IntN(4))}, remote: addr{lo: 7}, meta: packMeta(4, protoUDP, uint16(rng.IntN(10)), 53)}
	}
	for i := range 20000 {
		k := key()
		h := ft.hash(&k)
		x := ft.findLocked(s, &k, h, 0)
		if (x >= 0) != ref[k] {
			t.Fatalf("op %d: find %v = %d, reference has it: %v", i, k, x, ref[k])
		}
		switch op := rng.IntN(3); {
		case x < 0:
			if len(ref) == capacity {
				drop(lru[len(lru)-1])
			}
			s.insertLocked(&k, h, 0, 0)
			ref[k] = true
			moveFront(k)
		case op == 0:
			s.removeLocked(x)
			drop(k)
		default:
			s.touchLocked(x, 0)
			moveFront(k)
		}
		if s.n != len(ref) {
			t.Fatalf("op %d: shard holds %d, reference %d", i, s.n, len(ref))
		}
		// Walk the LRU list and compare with the reference order.
		j := 0
		for y := s.head; y >= 0; y = s.lru[y].next {
			if j >= len(lru) || s.entries[y].flowKeyOf() != lru[j] {
				t.Fatalf("op %d: LRU position %d differs", i, j)
			}
			j++
		}
		if j != len(lru) {
			t.Fatalf("op %d: LRU has %d entries, want %d", i, j, len(lru))
		}
	}
}

func TestFlowTableShardsAndCapacity(t *testing.T) {
	for _, c := range []int{1, 15, 16, 100, 1024, 16384, 100000} {
		ft := newFlowTable(c, DefaultTimeouts())
		total := 0
		for i := range ft.shards {
			s := &ft.shards[i]
			per := int(s.end - s.first)
			total += per
			if len(s.index) < 2*per {
				t.Errorf("capacity %d: index %d slots for %d entries", c, len(s.index), per)
			}
		}
		if total < c || total > c+len(ft.shards) {
			t.Errorf("capacity %d: %d entries in %d shards", c, total, len(ft.shards))
		}
	}
}

func TestTimedOutEntryIsReclaimedOnLookup(t *testing.T) {
	ft := newFlowTable(16, DefaultTimeouts())
	s := &ft.shards[0]
	k := flowKey{meta: packMeta(4, protoICMP, 1, 0)}
	h := ft.hash(&k)
	s.insertLocked(&k, h, 0, 0)
	if x := ft.findLocked(s, &k, h, int64(DefaultTimeouts().ICMP)); x < 0 {
		t.Fatal("entry gone before its timeout")
	}
	if x := ft.findLocked(s, &k, h, int64(DefaultTimeouts().ICMP+time.Nanosecond)); x >= 0 {
		t.Fatal("entry alive after its timeout")
	}
	if s.n != 0 {
		t.Fatalf("shard holds %d entries after reclaiming", s.n)
	}
}

// TestReusedEntryNeverPassesForItsOldKey checks what lets readers go
// without the lock: a reader that read a slot word before the entry it
// names was freed and reused finds a different word there afterwards
// (the incarnation changed), and a removal that moves other keys' slots
// leaves the shard's seq changed and even.
func TestReusedEntryNeverPassesForItsOldKey(t *testing.T) {
	ft := newFlowTable(16, DefaultTimeouts())
	s := &ft.shards[0]
	key := func(port uint16) flowKey {
		return flowKey{local: addr{lo: 1}, remote: addr{lo: 2}, meta: packMeta(4, protoUDP, port, 53)}
	}
	a := key(1)
	ha := ft.hash(&a)
	xa := s.insertLocked(&a, ha, 0, 0)
	var old []uint64
	for i := range s.index {
		if w := s.index[i].Load(); w != 0 {
			old = append(old, w)
		}
	}
	seq := s.seq.Load()
	for port := uint16(2); port < 2000; port++ {
		s.removeLocked(xa)
		b := key(port)
		hb := ft.hash(&b)
		if x := s.insertLocked(&b, hb, 0, 0); x != xa {
			t.Fatalf("entry %d reused as %d, want the freed one", xa, x)
		}
		for i := range s.index {
			if w := s.index[i].Load(); w != 0 && slices.Contains(old, w) {
				t.Fatalf("port %d: slot %d holds %#x again, a word from before the reuse", port, i, w)
			}
		}
	}
	if q := s.seq.Load(); q&1 != 0 || q < seq {
		t.Fatalf("seq %d after removals (was %d): odd or went back", q, seq)
	}
	// Find a key that sits past its home slot; removing the entry in its
	// home slot must shift it back, and seq must show that.
	port := uint16(3000)
	for range 1000 {
		for i := range s.index {
			w := s.index[i].Load()
			if w == 0 || uint64(s.entries[slotEntry(w)].home) == uint64(i) {
				continue
			}
			home := s.index[s.entries[slotEntry(w)].home].Load()
			before := s.seq.Load()
			s.removeLocked(slotEntry(home))
			if q := s.seq.Load(); q != before+2 {
				t.Fatalf("seq %d after a removal that shifts (was %d), want %d", q, before, before+2)
			}
			return
		}
		k := key(port)
		port++
		h := ft.hash(&k)
		if s.n == 16 {
			s.removeLocked(s.tail)
		}
		s.insertLocked(&k, h, 0, 0)
	}
	t.Fatal("no key ever sat past its home slot")
}

// TestLockFreeMissIsNeverWrong checks that lock-free lookups never call
// a present flow absent. A writer keeps putting a few flows behind others
// in their probe chains (remove, fill, insert again) and then removes the
// others, so the kept flows shift back while present; an epoch per kept
// flow, odd while it is out, tells readers when a flow was present all
// through their lookup. The general lookup and the fast path's probe must
// find such a flow or say they are unsure (then the caller takes the
// lock). Run with -race.
func TestLockFreeMissIsNeverWrong(t *testing.T) {
	ft := newFlowTable(16, DefaultTimeouts())
	s := &ft.shards[0]
	key := func(i int) flowKey {
		return flowKey{local: addr{lo: 1}, remote: addr{lo: uint64(2 + i)}, meta: packMeta(4, protoUDP, uint16(i), 53)}
	}
	const kept, churn = 4, 10
	var epoch [kept]atomic.Uint64
	var where [kept]int32 // entry of each kept flow; guarded by s.mu
	for i := range kept {
		k := key(i)
		s.mu.Lock()
		where[i] = s.insertLocked(&k, ft.hash(&k), 0, 0)
		s.mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(7, 8))
		var xs []int32
		for round := 0; ; round++ {
			select {
			case <-stop:
				return
			default:
			}
			i := round % kept
			k := key(i)
			s.mu.Lock()
			epoch[i].Add(1)
			s.removeLocked(where[i])
			for j := range churn {
				c := key(1000 + round%50*churn + j)
				xs = append(xs, s.insertLocked(&c, ft.hash(&c), 0, 0))
			}
			where[i] = s.insertLocked(&k, ft.hash(&k), 0, 0)
			epoch[i].Add(1)
			s.mu.Unlock()
			rng.Shuffle(len(xs), func(a, b int) { xs[a], xs[b] = xs[b], xs[a] })
			for _, x := range xs {
				s.mu.Lock()
				s.removeLocked(x)
				s.mu.Unlock()
			}
			xs = xs[:0]
		}
	}()
	deadline := time.Now().Add(400 * time.Millisecond)
	var wrong atomic.Value
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(deadline); n++ {
				i := (n + g) % kept
				k := key(i)
				h := ft.hash(&k)
				e := epoch[i].Load()
				_, _, res := s.lookup(&k, h)
				missing := false
				if w := ft.index[h&ft.indexMask].Load(); w>>slotTagShift != slotTag(h) {
					_, _, missing = ft.probe(h&ft.indexMask, w, slotTag(h))
				}
				if e&1 == 0 && epoch[i].Load() == e && (res == absent || missing) {
					wrong.Store(fmt.Sprintf("kept flow %d called absent (lookup %v, probe %v)", i, res == absent, missing))
					return
				}
			}
		}()
	}
	for time.Now().Before(deadline) && wrong.Load() == nil {
		runtime.Gosched()
	}
	close(stop)
	wg.Wait()
	if w := wrong.Load(); w != nil {
		t.Fatal(w)
	}
}
