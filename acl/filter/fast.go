package filter

import (
	"encoding/binary"
	"sync/atomic"
)

// The path of the bulk of traffic. RunInAt and RunOutAt parse TCP and UDP
// over IPv4 without options or fragmentation themselves, in registers, and
// quick6 does the same for IPv6 without extension headers. Such a packet
// either passes on one lock-free reading of its flow's entry, writing
// nothing but its counter, or goes on (in4, out4, inTracked, outTracked) to
// the rules and the locked table code - except an inbound SYN of a flow the
// home slot proves absent, which in4SYN decides with the rules alone,
// without a lock or a write (halfopen.go). Anything else (ICMP, IP options,
// fragments, extension headers, anything malformed) goes to the general
// parser, which decides about it from scratch.
//
// This code is written for instruction count, measured per line with
// callgrind: the established-flow path is what most packets cost.

// quick6 parses b into q if it is an IPv6 TCP or UDP packet without
// extension headers. Its checks are those of parse for that shape: a
// payload length within the buffer and covering the transport header, a
// TCP data offset of at least 5 words within the packet, a UDP length
// between 8 and the packet's.
func quick6(b []byte, q *packet) bool {
	if len(b) < 48 || b[0]>>4 != 6 {
		return false
	}
	total := 40 + int(binary.BigEndian.Uint16(b[4:]))
	if total > len(b) || total < 48 {
		return false
	}
	l4 := b[40:total]
	ports := binary.BigEndian.Uint32(l4)
	switch q.proto = b[6]; q.proto {
	case protoTCP:
		if len(l4) < 20 {
			return false
		}
		if off := int(l4[12]>>4) * 4; off < 20 || off > len(l4) {
			return false
		}
		q.kind, q.tcpFlags = kindTCP, l4[13]
	case protoUDP:
		if n := int(binary.BigEndian.Uint16(l4[4:])); n < 8 || n > len(l4) {
			return false
		}
		q.kind = kindUDP
	default:
		return false
	}
	q.v = 6
	q.src = addr{hi: binary.BigEndian.Uint64(b[8:]), lo: binary.BigEndian.Uint64(b[16:])}
	q.dst = addr{hi: binary.BigEndian.Uint64(b[24:]), lo: binary.BigEndian.Uint64(b[32:])}
	q.srcPort, q.dstPort = uint16(ports>>16), uint16(ports)
	return true
}

// needIn and needOut, indexed by a packet's TCP flags&0x17 (FIN, SYN,
// RST, ACK; 0 for UDP and ICMP), hold the flags its flow must show in
// okIn or okOut for the packet to pass without a write. Bit 7 stands for
// "the flow is fit to pass packets that way at all". A SYN that may start
// a new flow over an old one's ports (inbound: any; outbound: without ACK
// or RST) needs bit 6, which no flow shows: only the locked path decides
// about those.
var needIn, needOut = func() (in, out [0x18]uint8) {
	for i := range 0x18 {
		fin, syn, rst, ack := i&tcpFIN != 0, i&tcpSYN != 0, i&tcpRST != 0, i&tcpACK != 0
		in[i], out[i] = 0x80, 0x80
		if fin {
			in[i] |= flagFinIn
			out[i] |= flagFinOut
		}
		if rst {
			in[i] |= flagRST
			out[i] |= flagRST
		}
		if syn {
			in[i] |= 0x40
			if !ack && !rst {
				out[i] |= 0x40
			}
		}
	}
	return in, out
}()

// okIn and okOut map a flow's flags to themselves with bit 7 set if the
// flow may pass packets that way without a write: it is not revoked, and
// it has been answered unless the packet comes from the side that started
// it.
var okIn, okOut = func() (in, out [256]uint8) {
	for i := range 256 {
		fl := uint8(i)
		in[i], out[i] = fl&^0x80, fl&^0x80
		if fl&flagRevoked != 0 {
			continue
		}
		if fl&flagInbound != 0 || fl&flagReplied != 0 {
			in[i] |= 0x80
		}
		if fl&flagInbound == 0 || fl&flagReplied != 0 {
			out[i] |= 0x80
		}
	}
	return in, out
}()

// passesIn reports whether an inbound packet with TCP flags tcpFlags (0 if
// not TCP) of a known flow may pass on one reading of the flow's entry
// (state st, last seen at seen) without any write: the entry shows the
// flags needIn asks for, it needs no newer last-seen time, and if the
// remote side started the flow, the current rule set decided it and its
// rule has not ended. Else the locked path decides.
//
// stale is now.mono - the table's tick: an entry seen at or before it
// needs its last-seen time refreshed.
func passesIn(st flowState, seen, stale int64, now Instant, rules *atomic.Pointer[ruleSet], tcpFlags uint8) bool {
	return needIn[tcpFlags&0x17]&^okIn[uint8(st)] == 0 && seen > stale &&
		(uint8(st)&flagInbound == 0 || rules.Load().current(st, now.wall))
}

// passesOut is passesIn for outbound packets.
func passesOut(st flowState, seen, stale int64, now Instant, rules *atomic.Pointer[ruleSet], tcpFlags uint8) bool {
	return needOut[tcpFlags&0x17]&^okOut[uint8(st)] == 0 && seen > stale &&
		(uint8(st)&flagInbound == 0 || rules.Load().current(st, now.wall))
}

// in4c is in4 for RunInAt: it also counts the packet, by its remote
// address.
func (f *Filter) in4c(addrs uint64, ports uint32, tcpFlags uint8, meta, h uint64, missing bool, now Instant) (Verdict, Reason) {
	r := f.in4(addrs, ports, tcpFlags, meta, h, missing, now)
	f.count.add(uint(addrs>>32), r)
	return r.Verdict(), r
}

// in4 decides about an inbound IPv4 TCP or UDP packet that did not pass on
// RunInAt's (or RunInBatch's) unlocked path (see there for the arguments);
// the caller counts it. missing says that path proved the flow absent.
func (f *Filter) in4(addrs uint64, ports uint32, tcpFlags uint8, meta, h uint64, missing bool, now Instant) Reason {
	proto := uint8(meta >> 32)
	rs := f.rules.Load()
	var r Reason
	switch {
	case !missing:
		p := packet4(addr{lo: addrs >> 32}, addr{lo: addrs & 0xffffffff}, ports, proto, tcpFlags)
		k := flowKey{local: p.dst, remote: p.src, meta: meta}
		r = f.inKnown(&p, &k, h, unsure, now)
	case proto == protoTCP && pureSYN(tcpFlags):
		r = f.in4SYN(addrs, uint16(ports), now)
	default:
		// Not in the table: the rules have the last word, and only a
		// flow they admit is recorded (see newInbound).
		rr, ref := rs.match4(uint32(addrs>>32), uint32(addrs), proto, uint16(ports), now.wall)
		k := kindUDP
		if proto == protoTCP {
			k = kindTCP
		}
		var insert bool
		if r, insert = newInbound(k, tcpFlags, rr); insert {
			r = f.insert4(addrs, ports, tcpFlags, meta, h, now, rs, r, rr, ref)
		}
	}
	return r
}

// in4SYNc is in4SYN for RunInAt: it also counts the packet.
func (f *Filter) in4SYNc(addrs uint64, dport uint16, now Instant) (Verdict, Reason) {
	r := f.in4SYN(addrs, dport, now)
	f.count.add(uint(addrs>>32), r)
	return r.Verdict(), r
}

// in4SYN decides about the SYN (without ACK or RST) of an inbound IPv4 TCP
// connection with no flow entry (addresses addrs, destination port dport):
// newInbound's case of a new connection, written out. The rules decide,
// and nothing is recorded (halfopen.go).
func (f *Filter) in4SYN(addrs uint64, dport uint16, now Instant) Reason {
	r, _ := f.rules.Load().match4(uint32(addrs>>32), uint32(addrs), protoTCP, dport, now.wall)
	return r
}

// insert4 records the flow of an inbound IPv4 packet that in4 found absent
// and newInbound admitted with reason r (the rules said rr, ref), unless
// another packet of it got there first: then the general path decides with
// the lock. It returns the packet's reason.
func (f *Filter) insert4(addrs uint64, ports uint32, tcpFlags uint8, meta, h uint64, now Instant, rs *ruleSet, r, rr Reason, ref uint32) Reason {
	kw := [5]uint64{0, addrs, 0, 0, meta}
	ft := &f.flows
	s := ft.shardFor(h)
	s.mu.Lock()
	if ft.findWordsLocked(s, &kw, h, now.mono) < 0 {
		s.insertWordsLocked(&kw, h, now.mono, mkState(flagInbound|tcpFlagsIn(tcpFlags), ref, rs.gen))
		s.mu.Unlock()
		return r
	}
	s.mu.Unlock()
	p := packet4(addr{lo: addrs >> 32}, addr{lo: addrs & 0xffffffff}, ports, uint8(meta>>32), tcpFlags)
	k := flowKey{local: p.dst, remote: p.src, meta: meta}
	return f.inLocked(s, &k, h, &p, now, rs, rr, ref)
}

// packet4 returns the packet the general parser makes of an IPv4 TCP or
// UDP packet.
func packet4(src, dst addr, ports uint32, proto, tcpFlags uint8) packet {
	k := kindUDP
	if proto == protoTCP {
		k = kindTCP
	}
	return packet{src: src, dst: dst, v: 4, kind: k, proto: proto, tcpFlags: tcpFlags, srcPort: uint16(ports >> 16), dstPort: uint16(ports)}
}

// inOtherc is inOther for RunInAt: it also counts the packet.
func (f *Filter) inOtherc(b []byte, now Instant) (Verdict, Reason) {
	r := f.inOther(b, now)
	f.count.add(stripeOfBytes(b), r)
	return r.Verdict(), r
}

// inOther decides about an inbound packet that the IPv4 fast path does not
// take; the caller counts it.
func (f *Filter) inOther(b []byte, now Instant) Reason {
	var p packet
	if quick6(b, &p) {
		ft := &f.flows
		meta := packMeta(6, p.proto, p.dstPort, p.srcPort)
		return f.inTracked(&p, meta, ft.loHash(p.dst.lo, p.src.lo, meta, ft.hiHash(p.dst.hi, p.src.hi)), now)
	}
	p = packet{}
	return f.runIn(b, &p, now)
}

// inTracked decides about an inbound TCP or UDP packet p whose flow key has
// meta word meta and hash h, and which did not pass on the unlocked path.
func (f *Filter) inTracked(p *packet, meta, h uint64, now Instant) Reason {
	k := flowKey{local: p.dst, remote: p.src, meta: meta}
	return f.inKnown(p, &k, h, unsure, now)
}

// inKnown decides about inbound packet p of a tracked kind with key k and
// hash h, given what a lookup of its flow found: absent, found (but not
// passing without the lock), or unsure to look (again).
func (f *Filter) inKnown(p *packet, k *flowKey, h uint64, res lookupResult, now Instant) Reason {
	ft := &f.flows
	rs := f.rules.Load()
	s := ft.shardFor(h)
	if res == unsure {
		var st flowState
		var seen int64
		st, seen, res = s.lookup(k, h)
		if res == found && passesIn(st, seen, now.mono-ft.tick, now, &f.rules, p.tcpFlags) {
			return AcceptEstablished
		}
	}
	switch res {
	case absent:
		rr, ref := rs.match(p.v, p.proto, p.src, p.dst, p.dstPort, now.wall)
		if r, insert := newInbound(p.kind, p.tcpFlags, rr); !insert {
			// The flow was not in the table when we looked, so the rules
			// have the last word and nothing needs recording.
			return r
		}
		return f.inLocked(s, k, h, p, now, rs, rr, ref)
	}
	return f.inLocked(s, k, h, p, now, rs, reasonNone, 0)
}

// out4c is out4 for RunOutAt: it also counts the packet, by its remote
// address.
func (f *Filter) out4c(addrs uint64, ports uint32, tcpFlags uint8, meta, h uint64, missing bool, now Instant) (Verdict, Reason) {
	r := f.out4(addrs, ports, tcpFlags, meta, h, missing, now)
	f.count.add(uint(addrs), r)
	return r.Verdict(), r
}

// out4 records an outbound IPv4 TCP or UDP packet that did not pass on the
// unlocked path (see in4); the caller counts it.
func (f *Filter) out4(addrs uint64, ports uint32, tcpFlags uint8, meta, h uint64, missing bool, now Instant) Reason {
	proto := uint8(meta >> 32)
	src, dst := addr{lo: addrs >> 32}, addr{lo: addrs & 0xffffffff}
	p := packet4(src, dst, ports, proto, tcpFlags)
	k := flowKey{local: src, remote: dst, meta: meta}
	res := unsure
	if missing {
		res = absent
	}
	return f.outKnown(&p, &k, h, res, now)
}

// outOtherc is outOther for RunOutAt: it also counts the packet.
func (f *Filter) outOtherc(b []byte, now Instant) (Verdict, Reason) {
	r := f.outOther(b, now)
	f.count.add(stripeOfBytes(b), r)
	return r.Verdict(), r
}

// outOther records an outbound packet that the IPv4 fast path does not
// take; the caller counts it.
func (f *Filter) outOther(b []byte, now Instant) Reason {
	var p packet
	if quick6(b, &p) {
		ft := &f.flows
		meta := packMeta(6, p.proto, p.srcPort, p.dstPort)
		return f.outTracked(&p, meta, ft.loHash(p.src.lo, p.dst.lo, meta, ft.hiHash(p.src.hi, p.dst.hi)), now)
	}
	p = packet{}
	return f.runOut(b, &p, now)
}

// outTracked records an outbound TCP or UDP packet p whose flow key has
// meta word meta and hash h, and which did not pass on the unlocked path.
func (f *Filter) outTracked(p *packet, meta, h uint64, now Instant) Reason {
	k := flowKey{local: p.src, remote: p.dst, meta: meta}
	return f.outKnown(p, &k, h, unsure, now)
}
