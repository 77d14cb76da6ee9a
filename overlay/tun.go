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
// The clock is read once per batch, not once per packet.
type filterTUN struct {
	tun.Device
	filter *filter.Filter

	// keptMu guards kept, the list of admitted packets handed to the
	// native Write when some of a batch is dropped. wireguard-go calls
	// Write from one goroutine per peer (RoutineSequentialReceiver in
	// device/receive.go), so Write must be safe for concurrent use; the
	// native Write serializes on its own lock anyway, so holding keptMu
	// across it costs no parallelism. A batch with no drops takes neither.
	keptMu sync.Mutex
	kept   [][]byte
}

func newFilterTUN(dev tun.Device, f *filter.Filter) *filterTUN {
	return &filterTUN{Device: dev, filter: f, kept: make([][]byte, 0, dev.BatchSize())}
}

// Read reads a batch from the native device and records each packet's
// flow; packets the filter drops get size 0.
func (t *filterTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := t.Device.Read(bufs, sizes, offset)
	if n > 0 {
		now := t.filter.Now()
		for i := range n {
			if sizes[i] <= 0 {
				continue
			}
			if v, _ := t.filter.RunOutAt(bufs[i][offset:offset+sizes[i]], now); v != filter.Accept {
				sizes[i] = 0
			}
		}
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
	now := t.filter.Now()
	for i, b := range bufs {
		if v, _ := t.filter.RunInAt(b[offset:], now); v != filter.Accept {
			return t.writeSome(bufs, offset, i, now)
		}
	}
	return t.Device.Write(bufs, offset)
}

// writeSome writes the admitted packets of bufs, given that bufs[:drop]
// were admitted and bufs[drop] was not.
func (t *filterTUN) writeSome(bufs [][]byte, offset, drop int, now filter.Instant) (int, error) {
	t.keptMu.Lock()
	defer t.keptMu.Unlock()
	kept := append(t.kept[:0], bufs[:drop]...)
	for _, b := range bufs[drop+1:] {
		if v, _ := t.filter.RunInAt(b[offset:], now); v == filter.Accept {
			kept = append(kept, b)
		}
	}
	t.kept = kept
	if len(kept) == 0 {
		return 0, nil
	}
	n, err := t.Device.Write(kept, offset)
	clear(kept) // do not pin wireguard-go's buffers
	return n, err
}
