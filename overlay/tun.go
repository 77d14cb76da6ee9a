package overlay

import (
	"sync"

	"github.com/latchnet/latch/acl/filter"
	"golang.zx2c4.com/wireguard/tun"
)

// filterTUN is the tun.Device wireguard-go reads from and writes to: the
// native TUN with the packet filter in the path.
//
// It keeps the native device's batching and offloads intact. Everything but
// Read and Write is delegated (BatchSize above all: it is what makes
// wireguard-go hand over up to 128 packets at a time), and neither of those
// copies, reorders or splits packets:
//   - Read (outbound: this node -> overlay) lets the native device read and
//     split a GSO batch as usual, then runs the filter over each packet and
//     drops one by setting its size to 0, which wireguard-go skips.
//   - Write (inbound: overlay -> this node) runs the filter over each
//     packet and passes the admitted ones, in order, to the native Write,
//     which coalesces them (GRO) as usual.
//
// The clock is read once per batch, not once per packet, and each batch
// goes through the filter in one call (RunOutBatch, RunInBatch: up to
// filterChunk packets, the filter's counters updated once). With a FlowSink,
// each batch's packets are also counted per flow (flowacct.go) and handed
// to the sink once per batch.
type filterTUN struct {
	tun.Device
	filter *filter.Filter

	// flows, when not nil, receives every batch's flow counts (see
	// flowacct.go); outBatch is the outbound direction's table, used by
	// Read alone (wireguard-go reads from one goroutine). The inbound
	// direction takes its tables from flowBatchPool: Write runs on many
	// goroutines at once.
	flows    FlowSink
	outBatch *flowBatch

	// keptMu guards kept, the list of admitted packets handed to the
	// native Write when some of a batch is dropped. wireguard-go calls
	// Write from one goroutine per peer (RoutineSequentialReceiver in
	// device/receive.go), so Write must be safe for concurrent use; the
	// native Write serializes on its own lock anyway, so holding keptMu
	// across it costs no parallelism. A batch with no drops takes neither.
	keptMu sync.Mutex
	kept   [][]byte
}

// newFilterTUN wraps dev with filter f; flows may be nil (no accounting).
func newFilterTUN(dev tun.Device, f *filter.Filter, flows FlowSink) *filterTUN {
	t := &filterTUN{Device: dev, filter: f, kept: make([][]byte, 0, dev.BatchSize()), flows: flows}
	if flows != nil {
		t.outBatch = newFlowBatch()
	}
	return t
}

// filterChunk is how many packets the wrapper hands the filter at once:
// wireguard-go's batches (BatchSize, at most 128) take one call. Each call
// keeps its packets' reasons in an array of this size on the stack.
const filterChunk = 128

// Read reads a batch from the native device and records each packet's
// flow; packets the filter drops get size 0.
func (t *filterTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := t.Device.Read(bufs, sizes, offset)
	if n <= 0 {
		return n, err
	}
	now := t.filter.Now()
	var rs [filterChunk]filter.Reason
	for start := 0; start < n; start += filterChunk {
		end := min(start+filterChunk, n)
		chunk, csizes, reasons := bufs[start:end], sizes[start:end], rs[:end-start]
		t.filter.RunOutBatch(chunk, offset, csizes, reasons, now)
		for i, r := range reasons {
			if csizes[i] <= 0 {
				continue // skipped by the filter too
			}
			if t.flows != nil {
				t.outBatch.add(chunk[i][offset:offset+csizes[i]], r.Verdict(), r, t.flows, FlowOut)
			}
			if r.Verdict() != filter.Accept {
				csizes[i] = 0
			}
		}
	}
	if t.flows != nil {
		t.outBatch.flush(t.flows, FlowOut)
	}
	return n, err
}

// Write filters a batch of decrypted packets and writes the admitted ones.
//
// Every packet here has already passed wireguard-go's cryptokey routing:
// RoutineSequentialReceiver (device/receive.go) drops a decrypted packet
// unless allowedips.Lookup(source) is the very peer whose key decrypted it.
// So a packet's source address proves which peer sent it, and the filter's
// rules, which name source addresses, name peer identities.
//
// bufs is never modified; when packets are dropped, the admitted ones are
// collected into a slice owned by t.
func (t *filterTUN) Write(bufs [][]byte, offset int) (int, error) {
	if t.flows != nil {
		return t.writeCounted(bufs, offset)
	}
	now := t.filter.Now()
	var rs [filterChunk]filter.Reason
	for start := 0; start < len(bufs); start += filterChunk {
		chunk := bufs[start:min(start+filterChunk, len(bufs))]
		if t.filter.RunInBatch(chunk, offset, nil, rs[:len(chunk)], now) != len(chunk) {
			return t.writeSome(bufs, offset, start, rs[:len(chunk)], now, nil)
		}
	}
	return t.Device.Write(bufs, offset)
}

// writeCounted is Write with flow accounting: the batch's counts go to
// the sink once, before the admitted packets are written.
func (t *filterTUN) writeCounted(bufs [][]byte, offset int) (int, error) {
	now := t.filter.Now()
	fb := flowBatchPool.Get().(*flowBatch)
	defer flowBatchPool.Put(fb)
	var rs [filterChunk]filter.Reason
	for start := 0; start < len(bufs); start += filterChunk {
		chunk := bufs[start:min(start+filterChunk, len(bufs))]
		reasons := rs[:len(chunk)]
		accepted := t.filter.RunInBatch(chunk, offset, nil, reasons, now)
		for i, r := range reasons {
			fb.add(chunk[i][offset:], r.Verdict(), r, t.flows, FlowIn)
		}
		if accepted != len(chunk) {
			return t.writeSome(bufs, offset, start, reasons, now, fb)
		}
	}
	fb.flush(t.flows, FlowIn)
	return t.Device.Write(bufs, offset)
}

// writeSome writes the admitted packets of bufs, given that bufs[:start]
// were admitted and reasons holds the reasons of the chunk from start on,
// some of which are drops. The packets after that chunk are filtered here;
// with fb, they are counted into it (the chunk's packets already are), and
// fb is flushed to the sink.
func (t *filterTUN) writeSome(bufs [][]byte, offset, start int, reasons []filter.Reason, now filter.Instant, fb *flowBatch) (int, error) {
	t.keptMu.Lock()
	defer t.keptMu.Unlock()
	kept := append(t.kept[:0], bufs[:start]...)
	for i, r := range reasons {
		if r.Verdict() == filter.Accept {
			kept = append(kept, bufs[start+i])
		}
	}
	var rs [filterChunk]filter.Reason
	for start += len(reasons); start < len(bufs); start += filterChunk {
		chunk := bufs[start:min(start+filterChunk, len(bufs))]
		reasons := rs[:len(chunk)]
		t.filter.RunInBatch(chunk, offset, nil, reasons, now)
		for i, r := range reasons {
			if fb != nil {
				fb.add(chunk[i][offset:], r.Verdict(), r, t.flows, FlowIn)
			}
			if r.Verdict() == filter.Accept {
				kept = append(kept, chunk[i])
			}
		}
	}
	if fb != nil {
		fb.flush(t.flows, FlowIn)
	}
	t.kept = kept
	if len(kept) == 0 {
		return 0, nil
	}
	n, err := t.Device.Write(kept, offset)
	clear(kept) // do not pin wireguard-go's buffers
	return n, err
}
