package overlay

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/acl/filter"
)

// TestFilterTUNBatchesLongerThanOneFilterCall: a batch longer than one
// filter call (filterChunk) is filtered whole, in order, whether its drops
// fall in the first chunk, a later one, or none, in both directions.
func TestFilterTUNBatchesLongerThanOneFilterCall(t *testing.T) {
	allowed := func(i int) []byte { return udpPacket("100.64.0.2", "100.64.0.1", uint16(1000+i), 53) }
	denied := udpPacket("100.64.0.9", "100.64.0.1", 1000, 53)
	const n = 2*filterChunk + 7
	for name, deniedAt := range map[string][]int{
		"none":         nil,
		"first chunk":  {3, filterChunk + 1},
		"later chunks": {filterChunk + 2, 2*filterChunk + 5},
	} {
		t.Run(name, func(t *testing.T) {
			ft, native := newTestFilterTUN(t)
			var pkts, want [][]byte
			isDenied := map[int]bool{}
			for _, i := range deniedAt {
				isDenied[i] = true
			}
			for i := range n {
				if isDenied[i] {
					pkts = append(pkts, denied)
					continue
				}
				pkts = append(pkts, allowed(i))
				want = append(want, allowed(i))
			}
			if _, err := ft.Write(batch(writeOffset, pkts...), writeOffset); err != nil {
				t.Fatal(err)
			}
			var got [][]byte
			for _, w := range native.written {
				got = append(got, w...)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("native writes (-want +got):\n%s", diff)
			}
			if c := ft.filter.Count(filter.DropNoRule); c != uint64(len(deniedAt)) {
				t.Errorf("drop-no-rule count %d, want %d", c, len(deniedAt))
			}

			// Outbound: a truncated packet in each chunk gets size 0.
			var out [][]byte
			wantSizes := make([]int, n)
			for i := range n {
				p := udpPacket("100.64.0.1", "100.64.0.2", uint16(2000+i), 53)
				if isDenied[i] {
					p = p[:25]
				} else {
					wantSizes[i] = len(p)
				}
				out = append(out, p)
			}
			native.toRead = out
			bufs := make([][]byte, n)
			for i := range bufs {
				bufs[i] = make([]byte, readOffset+100)
			}
			sizes := make([]int, n)
			if got, err := ft.Read(bufs, sizes, readOffset); err != nil || got != n {
				t.Fatalf("Read = %d, %v; want %d", got, err, n)
			}
			if diff := cmp.Diff(wantSizes, sizes); diff != "" {
				t.Errorf("sizes (-want +got):\n%s", diff)
			}
		})
	}
}
