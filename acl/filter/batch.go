package filter

import (
	"encoding/binary"
	"math/bits"
	"sync/atomic"
)

// Batches. The data plane hands the filter up to 128 packets at a time
// (wireguard-go's batches), with one clock reading for all of them.
// RunInBatch and RunOutBatch run the fast path of RunInAt and RunOutAt
// over every packet of a batch in one loop, without a call per packet, and
// count reasons in a local array that is added to the shared counters once,
// when the batch is done: a packet that passes on the unlocked path, and a
// new inbound SYN (a rule match, halfopen.go), then make no write to
// shared memory at all.
//
// Every packet gets exactly the verdict and reason that RunInAt (RunOutAt)
// would give it, in order, and decisions use the rules in force when each
// packet is looked at, as there: a rule change during a batch takes effect
// from the next packet. Only the counters lag: Count and Counts see a
// batch's packets when the batch returns (TestBatchAgreesWithPerPacket).

// batchCounts counts one batch's packets per reason, indexed by the
// reason's low four bits (a mask, not a bounds check, on the packet path).
type batchCounts [16]uint32

// Every reason fits batchCounts' index.
var _ [16 - numReasons]struct{}

// batchStripe picks the stripe a batch is counted in: a byte of its first
// packet's addresses (the source's for IPv4), which spreads peers; any
// choice is correct.
func batchStripe(bufs [][]byte, offset int) uint {
	if b := bufs[0]; len(b) > offset+15 {
		return uint(b[offset+15])
	}
	return 0
}

// addBatch adds a batch's counts to the shared counters, in stripe stripe,
// and returns how many of its packets were accepted.
func (c *counters) addBatch(stripe uint, n *batchCounts) int {
	accepted := 0
	for r := range numReasons {
		if k := n[r]; k != 0 {
			c[r][stripe%counterStripes].n.Add(uint64(k))
			if Reason(r).Verdict() == Accept {
				accepted += int(k)
			}
		}
	}
	return accepted
}

// RunInBatch filters a batch of inbound packets at now (an Instant from
// Now; the zero Instant means "read the clock", once). Packet i is
// bufs[i][offset:], or, when sizes is not nil,
// bufs[i][offset:offset+sizes[i]], and a packet whose size is <= 0 is
// skipped. reasons[i] receives packet i's reason, whose Verdict says
// whether it passes; a skipped packet gets the zero Reason ("none", a
// drop) and is counted nowhere. reasons (and sizes, if not nil) must be at
// least as long as bufs. It returns the number of packets accepted. The
// packets are read, never modified or kept.
//
// Each packet gets the verdict and reason RunInAt would give it at now,
// with the packets run one after the other in order; the batch's packets
// are added to the counters when it returns.
func (f *Filter) RunInBatch(bufs [][]byte, offset int, sizes []int, reasons []Reason, now Instant) int {
	if len(bufs) == 0 {
		return 0
	}
	if now.mono|now.wall == 0 {
		now = f.Now()
	}
	reasons = reasons[:len(bufs)]
	if sizes != nil {
		sizes = sizes[:len(bufs)]
	}
	ft := &f.flows
	index, entries, stale := ft.index, ft.entries, now.mono-ft.tick
	var n batchCounts
	for x, buf := range bufs {
		// RunInAt's fast path, written out here so that a packet that
		// passes on it makes no call (a call would spill the loop's
		// state); kept line for line in step with RunInAt
		// (TestBatchAgreesWithPerPacket and FuzzBatchAgrees hold the two
		// together). The variables are declared first for the gotos.
		var (
			b              []byte
			r              Reason
			tcpFlags       uint8
			ports          uint32
			meta, addrs, h uint64
			w              uint64
			total          int
			slot           *atomic.Uint64
			e              *flowEntry
		)
		end := len(buf)
		if sizes != nil {
			if sizes[x] <= 0 {
				reasons[x] = reasonNone
				continue
			}
			end = offset + sizes[x]
		}
		// The length is checked before slicing, so that the slice needs
		// no guard against pointing past its array (a packet too short
		// for this path goes to the general parser, as in RunInAt).
		if end-offset < 28 {
			goto other
		}
		b = buf[offset:end:end]
		if b[0] != 0x45 {
			goto other
		}
		total = int(binary.BigEndian.Uint16(b[2:]))
		if total > len(b) || binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
			goto other
		}
		switch b[9] {
		case protoTCP:
			if total < 40 || uint(int(b[32]>>2&^3)-20) > uint(total-40) {
				goto other
			}
			tcpFlags = b[33]
			meta = 4<<40 | protoTCP<<32
		case protoUDP:
			if k := int(binary.BigEndian.Uint16(b[24:])); total < 28 || k < 8 || k > total-20 {
				goto other
			}
			meta = 4<<40 | protoUDP<<32
		default:
			goto other
		}
		addrs = binary.BigEndian.Uint64(b[12:])
		ports = binary.BigEndian.Uint32(b[20:])
		meta |= uint64(bits.RotateLeft32(ports, 16))
		h = ft.hash4(addrs, meta)
		slot = &index[h&ft.indexMask]
		w = slot.Load()
		if w>>slotTagShift != slotTag(h) {
			switch {
			case w != 0:
				r = f.in4Probe(addrs, ports, tcpFlags, meta, h, h&ft.indexMask, w, now)
			case tcpFlags&(tcpSYN|tcpACK|tcpRST) == tcpSYN && meta>>32 == 4<<8|protoTCP:
				r = f.in4SYN(addrs, uint16(ports), now)
			default:
				r = f.in4(addrs, ports, tcpFlags, meta, h, true, now)
			}
			goto done
		}
		e = &entries[slotEntryIndex(w)]
		if e.key[4].Load()^meta|e.key[1].Load()^addrs == 0 {
			st, seen := e.state.Load(), e.seen.Load()
			if slot.Load() == w && passesIn(st, seen, stale, now, &f.rules, tcpFlags) {
				r = AcceptEstablished
				goto done
			}
		}
		r = f.in4(addrs, ports, tcpFlags, meta, h, false, now)
		goto done
	other:
		r = f.inOther(buf[offset:end], now)
	done:
		reasons[x] = r
		n[r&15]++
	}
	return f.count.addBatch(batchStripe(bufs, offset), &n)
}

// RunOutBatch records a batch of outbound packets at now; its arguments
// and results are those of RunInBatch, and each packet gets the verdict
// and reason RunOutAt would give it.
func (f *Filter) RunOutBatch(bufs [][]byte, offset int, sizes []int, reasons []Reason, now Instant) int {
	if len(bufs) == 0 {
		return 0
	}
	if now.mono|now.wall == 0 {
		now = f.Now()
	}
	reasons = reasons[:len(bufs)]
	if sizes != nil {
		sizes = sizes[:len(bufs)]
	}
	ft := &f.flows
	index, entries, stale := ft.index, ft.entries, now.mono-ft.tick
	var n batchCounts
	for x, buf := range bufs {
		// RunOutAt's fast path, written out as in RunInBatch.
		var (
			b                  []byte
			r                  Reason
			tcpFlags           uint8
			ports              uint32
			meta, addrs, kw, h uint64
			w                  uint64
			total              int
			slot               *atomic.Uint64
			e                  *flowEntry
		)
		end := len(buf)
		if sizes != nil {
			if sizes[x] <= 0 {
				reasons[x] = reasonNone
				continue
			}
			end = offset + sizes[x]
		}
		if end-offset < 28 {
			goto other
		}
		b = buf[offset:end:end]
		if b[0] != 0x45 {
			goto other
		}
		total = int(binary.BigEndian.Uint16(b[2:]))
		if total > len(b) || binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
			goto other
		}
		switch b[9] {
		case protoTCP:
			if total < 40 || uint(int(b[32]>>2&^3)-20) > uint(total-40) {
				goto other
			}
			tcpFlags = b[33]
			meta = 4<<40 | protoTCP<<32
		case protoUDP:
			if k := int(binary.BigEndian.Uint16(b[24:])); total < 28 || k < 8 || k > total-20 {
				goto other
			}
			meta = 4<<40 | protoUDP<<32
		default:
			goto other
		}
		addrs = binary.BigEndian.Uint64(b[12:])
		ports = binary.BigEndian.Uint32(b[20:])
		kw = bits.RotateLeft64(addrs, 32)
		meta |= uint64(ports)
		h = ft.hash4(kw, meta)
		slot = &index[h&ft.indexMask]
		w = slot.Load()
		if w>>slotTagShift != slotTag(h) {
			if w == 0 {
				r = f.out4(addrs, ports, tcpFlags, meta, h, true, now)
			} else {
				r = f.out4Probe(addrs, ports, tcpFlags, kw, meta, h, h&ft.indexMask, w, now)
			}
			goto done
		}
		e = &entries[slotEntryIndex(w)]
		if e.key[4].Load()^meta|e.key[1].Load()^kw == 0 {
			st, seen := e.state.Load(), e.seen.Load()
			if slot.Load() == w && passesOut(st, seen, stale, now, &f.rules, tcpFlags) {
				r = AcceptOutbound
				goto done
			}
		}
		r = f.out4(addrs, ports, tcpFlags, meta, h, false, now)
		goto done
	other:
		r = f.outOther(buf[offset:end], now)
	done:
		reasons[x] = r
		n[r&15]++
	}
	return f.count.addBatch(batchStripe(bufs, offset), &n)
}
