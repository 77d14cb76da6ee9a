package filter

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers the parser understands.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// kind is what the filter can do with a parsed packet.
type kind uint8

const (
	// kindOther: a protocol the filter does not track. It can only be
	// admitted by a rule naming its protocol, never by a port.
	kindOther kind = iota
	kindTCP
	kindUDP
	// kindEchoRequest and kindEchoReply are ICMP/ICMPv6 echo messages,
	// tracked as flows keyed by their identifier.
	kindEchoRequest
	kindEchoReply
	// kindICMPError is an ICMP/ICMPv6 error; inner holds the packet it
	// quotes.
	kindICMPError
	// kindICMPOther is any other ICMP message.
	kindICMPOther
)

// tracked reports whether packets of kind k belong to flows.
func (k kind) tracked() bool { return k >= kindTCP && k <= kindEchoReply }

// addr is an IP address as two words, so that keys compare and hash
// without allocating. IPv4 addresses live in lo; the family is kept next to
// the address wherever it matters.
type addr struct{ hi, lo uint64 }

func addr4(b []byte) addr { return addr{lo: uint64(binary.BigEndian.Uint32(b))} }

func addr6(b []byte) addr {
	return addr{hi: binary.BigEndian.Uint64(b), lo: binary.BigEndian.Uint64(b[8:])}
}

func addrFrom(a netip.Addr) addr {
	if a.Is4() {
		b := a.As4()
		return addr4(b[:])
	}
	b := a.As16()
	return addr6(b[:])
}

func (a addr) less(b addr) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

// packet is the parsed view of one IP packet. It lives on the stack.
type packet struct {
	src, dst addr
	// v and proto are not neighbours on purpose: parse stores them one
	// byte at a time, and the compiler would read two neighbours as one
	// 16-bit word, which stalls store forwarding.
	v        uint8 // 4 or 6
	kind     kind
	proto    uint8
	tcpFlags uint8
	// srcPort and dstPort are the TCP or UDP ports. For echo messages the
	// identifier sits on the requester's side: a request has srcPort = id
	// and dstPort = 0, a reply the other way round, so both directions of
	// one exchange share a flow key.
	srcPort, dstPort uint16
	// inner is the quoted packet of an ICMP error.
	inner []byte
}

// isIPv6ExtHeader reports whether next-header value nh is an IPv6 extension
// header (RFC 8200 and the IANA registry) rather than an upper layer. ESP
// (50) is left out: nothing follows it in the clear, so it is an upper
// layer as far as filtering goes.
func isIPv6ExtHeader(nh uint8) bool {
	switch nh {
	case 0, 43, 44, 51, 59, 60, 135, 139, 140, 253, 254:
		return true
	}
	return false
}

// parse fills p from the IP packet b. It returns reasonNone on success,
// DropMalformed for anything truncated or self-contradictory, DropFragment
// for fragments, and DropIPv6ExtHeader for IPv6 extension headers. It never
// reads past the lengths the headers claim, and a packet it does not fully
// understand never gets ports.
func parse(b []byte, p *packet) Reason {
	if len(b) == 0 {
		return DropMalformed
	}
	switch b[0] >> 4 {
	case 4:
		return parse4(b, p)
	case 6:
		return parse6(b, p)
	}
	return DropMalformed
}

func parse4(b []byte, p *packet) Reason {
	if len(b) < 20 {
		return DropMalformed
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || total < ihl || total > len(b) {
		return DropMalformed
	}
	b = b[:total]
	p.v = 4
	p.proto = b[9]
	p.src = addr4(b[12:16])
	p.dst = addr4(b[16:20])
	// More-fragments flag or a fragment offset: only the first fragment
	// carries the transport header, and reassembly happens after us.
	if binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
		return DropFragment
	}
	return parseL4(b[ihl:], p)
}

func parse6(b []byte, p *packet) Reason {
	if len(b) < 40 {
		return DropMalformed
	}
	total := 40 + int(binary.BigEndian.Uint16(b[4:]))
	if total > len(b) {
		return DropMalformed
	}
	b = b[:total]
	p.v = 6
	p.proto = b[6]
	p.src = addr6(b[8:24])
	p.dst = addr6(b[24:40])
	switch {
	case p.proto == 44:
		return DropFragment
	case isIPv6ExtHeader(p.proto):
		return DropIPv6ExtHeader
	}
	return parseL4(b[40:], p)
}

// parseL4 reads the transport header of p from b, the IP payload.
func parseL4(b []byte, p *packet) Reason {
	switch {
	case p.proto == protoTCP:
		if len(b) < 20 {
			return DropMalformed
		}
		if off := int(b[12]>>4) * 4; off < 20 || off > len(b) {
			return DropMalformed
		}
		p.kind = kindTCP
		p.srcPort = binary.BigEndian.Uint16(b)
		p.dstPort = binary.BigEndian.Uint16(b[2:])
		p.tcpFlags = b[13]
	case p.proto == protoUDP:
		if len(b) < 8 {
			return DropMalformed
		}
		if n := int(binary.BigEndian.Uint16(b[4:])); n < 8 || n > len(b) {
			return DropMalformed
		}
		p.kind = kindUDP
		p.srcPort = binary.BigEndian.Uint16(b)
		p.dstPort = binary.BigEndian.Uint16(b[2:])
	case p.proto == protoICMP && p.v == 4, p.proto == protoICMPv6 && p.v == 6:
		if len(b) < 8 {
			return DropMalformed
		}
		parseICMP(b, p)
	default:
		p.kind = kindOther
	}
	return reasonNone
}

// parseICMP classifies an ICMP (v4) or ICMPv6 message of at least 8 bytes.
func parseICMP(b []byte, p *packet) {
	typ := b[0]
	p.kind = kindICMPOther
	if p.v == 4 {
		switch typ {
		case 8:
			p.kind = kindEchoRequest
		case 0:
			p.kind = kindEchoReply
		case 3, 11, 12: // destination unreachable, time exceeded, parameter problem
			p.kind = kindICMPError
		}
	} else {
		switch typ {
		case 128:
			p.kind = kindEchoRequest
		case 129:
			p.kind = kindEchoReply
		case 1, 2, 3, 4: // unreachable, packet too big, time exceeded, parameter problem
			p.kind = kindICMPError
		}
	}
	id := binary.BigEndian.Uint16(b[4:])
	switch p.kind {
	case kindEchoRequest:
		p.srcPort = id
	case kindEchoReply:
		p.dstPort = id
	case kindICMPError:
		p.inner = b[8:]
	}
}

// parseInner parses the packet an ICMP error of family v quotes: an IP
// header and at least the first 8 bytes of its payload, as this node sent
// it. It fills q with src, dst, proto, kind and ports and reports whether
// the quote names a flow the filter could track. The quote is truncated by
// nature, so lengths are checked against what is present, not what the
// quoted header claims.
func parseInner(v uint8, b []byte, q *packet) bool {
	var l4 []byte
	switch v {
	case 4:
		if len(b) < 20 || b[0]>>4 != 4 {
			return false
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl+8 || binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
			return false
		}
		q.v, q.proto = 4, b[9]
		q.src, q.dst = addr4(b[12:16]), addr4(b[16:20])
		l4 = b[ihl:]
	case 6:
		if len(b) < 48 || b[0]>>4 != 6 {
			return false
		}
		q.v, q.proto = 6, b[6]
		q.src, q.dst = addr6(b[8:24]), addr6(b[24:40])
		l4 = b[40:]
	default:
		return false
	}
	switch {
	case q.proto == protoTCP:
		q.kind = kindTCP
	case q.proto == protoUDP:
		q.kind = kindUDP
	case q.proto == protoICMP && v == 4, q.proto == protoICMPv6 && v == 6:
		// Only echo messages have flows. parseICMP needs 8 bytes, which
		// the length checks above guarantee.
		parseICMP(l4[:8], q)
		q.inner = nil
		return q.kind == kindEchoRequest || q.kind == kindEchoReply
	default:
		return false
	}
	q.srcPort = binary.BigEndian.Uint16(l4)
	q.dstPort = binary.BigEndian.Uint16(l4[2:])
	return true
}
