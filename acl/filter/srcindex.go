package filter

import (
	"math/bits"
	"slices"
)

// The source index answers "which rules' Sources contain this address" in
// a few loads. Rules mostly name single addresses (the agent resolves each
// peer to its overlay /32 and /128), so those go into an open-addressing
// hash table whose entries already include the wider prefixes covering
// them; the wider prefixes become sorted disjoint intervals, found for IPv4
// through a direct table on the address's top bits and a short search.
// Building it costs a sort; it is built once per rule set, never per packet.

// fib is 2^64 divided by the golden ratio: multiplying by it spreads
// neighbouring addresses (peers get consecutive ones) over the table.
const fib = 0x9e3779b97f4a7c15

// unionFunc returns the rule list holding list l's rules and more.
type unionFunc func(l listRef, more []uint32) listRef

// srcIndex4 is the IPv4 source index.
type srcIndex4 struct {
	// exact holds addr<<32 | list per slot; 0 is empty (no address is
	// there without a list). Its length is a
	// power of two at least twice the number of addresses, or 0.
	exact      []uint64
	exactShift uint8 // 64 - log2(len(exact))

	// Interval i runs from starts[i] up to starts[i+1] and has rule list
	// lists[i]; starts[0] == 0. top[b] is the interval holding the first
	// address whose top topBits bits are b (top[1<<topBits] is the last
	// interval), so an address's interval is among top[b]..top[b+1].
	starts  []uint32
	lists   []listRef
	top     []uint32
	topBits uint8
}

// newSrcIndex4 builds the index from the swept intervals of the wider
// prefixes (starts[0] must be 0) and the rules naming each single address.
func newSrcIndex4(starts []uint32, lists []listRef, exact map[uint32][]uint32, union unionFunc) srcIndex4 {
	x := srcIndex4{starts: starts, lists: lists}
	// About four top-table entries per interval keeps the search within a
	// bucket to a step or two; 2^16 entries (256 KiB) at most.
	x.topBits = uint8(min(16, max(4, bits.Len(uint(len(starts)))+2)))
	n := 1 << x.topBits
	x.top = make([]uint32, n+1)
	shift := 32 - uint(x.topBits)
	j := 0
	for b := range n {
		first := uint32(b) << shift
		for j+1 < len(starts) && starts[j+1] <= first {
			j++
		}
		x.top[b] = uint32(j)
	}
	x.top[n] = uint32(len(starts) - 1)

	if len(exact) == 0 {
		return x
	}
	size := 1 << bits.Len(uint(2*len(exact)-1))
	x.exact = make([]uint64, size)
	x.exactShift = uint8(64 - bits.TrailingZeros(uint(size)))
	mask := uint64(size - 1)
	keys := make([]uint32, 0, len(exact))
	for a := range exact {
		keys = append(keys, a)
	}
	slices.Sort(keys) // a deterministic layout
	for _, a := range keys {
		l := union(x.intervalList(a), exact[a])
		i := uint64(a) * fib >> (x.exactShift & 63)
		for x.exact[i] != 0 {
			i = (i + 1) & mask
		}
		x.exact[i] = uint64(a)<<32 | uint64(l)
	}
	return x
}

// intervalList returns the rule list of a's interval.
func (x *srcIndex4) intervalList(a uint32) listRef {
	b := a >> ((32 - x.topBits) & 31) // the masks spare a shift its range check
	lo, hi := x.top[b], x.top[b+1]
	// The largest i in [lo, hi] with starts[i] <= a; starts[lo] <= a.
	for lo < hi {
		m := (lo + hi + 1) >> 1
		if x.starts[m] <= a {
			lo = m
		} else {
			hi = m - 1
		}
	}
	return x.lists[lo]
}

// lookup returns the rule list for address a.
func (x *srcIndex4) lookup(a uint32) listRef {
	if len(x.exact) > 0 {
		mask := uint64(len(x.exact) - 1)
		for i := uint64(a) * fib >> (x.exactShift & 63); ; i = (i + 1) & mask {
			w := x.exact[i]
			if w == 0 {
				break
			}
			if uint32(w>>32) == a {
				return listRef(w)
			}
		}
	}
	return x.intervalList(a)
}

// srcIndex6 is the IPv6 source index: the same hash table of single
// addresses, and a binary search over the wider prefixes' intervals (few
// in practice: the overlay's own prefix, a handful of others).
type srcIndex6 struct {
	exact      []exact6
	exactShift uint8
	starts     []addr
	lists      []listRef
}

type exact6 struct {
	a    addr
	list listRef // noList: an empty slot
}

func hash6(a addr) uint64 { return (a.lo ^ bits.RotateLeft64(a.hi, 29)) * fib }

func newSrcIndex6(starts []addr, lists []listRef, exact map[addr][]uint32, union unionFunc) srcIndex6 {
	x := srcIndex6{starts: starts, lists: lists}
	if len(exact) == 0 {
		return x
	}
	size := 1 << bits.Len(uint(2*len(exact)-1))
	x.exact = make([]exact6, size)
	x.exactShift = uint8(64 - bits.TrailingZeros(uint(size)))
	mask := uint64(size - 1)
	keys := make([]addr, 0, len(exact))
	for a := range exact {
		keys = append(keys, a)
	}
	slices.SortFunc(keys, func(a, b addr) int {
		switch {
		case a.less(b):
			return -1
		case b.less(a):
			return 1
		}
		return 0
	})
	for _, a := range keys {
		l := union(x.intervalList(a), exact[a])
		i := hash6(a) >> (x.exactShift & 63)
		for x.exact[i].list != noList {
			i = (i + 1) & mask
		}
		x.exact[i] = exact6{a: a, list: l}
	}
	return x
}

func (x *srcIndex6) intervalList(a addr) listRef {
	s := x.starts
	lo, hi := 0, len(s)
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if !a.less(s[m]) {
			lo = m
		} else {
			hi = m
		}
	}
	return x.lists[lo]
}

func (x *srcIndex6) lookup(a addr) listRef {
	if len(x.exact) > 0 {
		mask := uint64(len(x.exact) - 1)
		for i := hash6(a) >> (x.exactShift & 63); ; i = (i + 1) & mask {
			e := &x.exact[i]
			if e.list == noList {
				break
			}
			if e.a == a {
				return e.list
			}
		}
	}
	return x.intervalList(a)
}
