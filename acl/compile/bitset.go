package compile

// bitset is a set of small non-negative integers (node slots or rule
// indices). It grows on set; reads beyond its end see zeros.
type bitset []uint64

func words(n int) int { return (n + 63) >> 6 }

func (b bitset) has(i int32) bool {
	w := int(i >> 6)
	return w < len(b) && b[w]&(1<<(uint(i)&63)) != 0
}

func (b *bitset) set(i int32) {
	w := int(i >> 6)
	if w >= len(*b) {
		*b = append(*b, make([]uint64, w+1-len(*b))...)
	}
	(*b)[w] |= 1 << (uint(i) & 63)
}

func (b bitset) unset(i int32) {
	if w := int(i >> 6); w < len(b) {
		b[w] &^= 1 << (uint(i) & 63)
	}
}

// or adds o to b, up to b's length.
func (b bitset) or(o bitset) {
	n := min(len(b), len(o))
	b, o = b[:n], o[:n]
	for i := range b {
		b[i] |= o[i]
	}
}

// reset returns b emptied and sized to hold n bits, reusing its memory.
func (b bitset) reset(n int) bitset {
	w := words(n)
	if cap(b) < w {
		return make(bitset, w)
	}
	b = b[:w]
	clear(b)
	return b
}
