package filter

import (
	"math/rand/v2"
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
			s.insertLocked(&k, h, 0)
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
		for y := s.head; y >= 0; y = s.entries[y].next {
			if j >= len(lru) || s.entries[y].key != lru[j] {
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
			total += len(s.entries)
			if len(s.index) < 2*len(s.entries) {
				t.Errorf("capacity %d: index %d slots for %d entries", c, len(s.index), len(s.entries))
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
	s.insertLocked(&k, h, 0)
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
