package filter

import (
	"encoding/binary"
	"net/netip"
)

// pkt describes a test packet; bytes renders it.
type pkt struct {
	src, dst     string
	proto        uint8
	sport, dport uint16
	flags        uint8  // TCP flags
	icmpType     uint8  // ICMP type; echo id travels in sport
	inner        []byte // quoted packet of an ICMP error
	payload      int
	raw          []byte // if set, bytes returns it as is
}

func tcp(src, dst string, sport, dport uint16, flags uint8) pkt {
	return pkt{src: src, dst: dst, proto: protoTCP, sport: sport, dport: dport, flags: flags}
}

func udp(src, dst string, sport, dport uint16) pkt {
	return pkt{src: src, dst: dst, proto: protoUDP, sport: sport, dport: dport}
}

// echo builds an ICMP or ICMPv6 echo request (reply=false) or reply.
func echo(src, dst string, id uint16, reply bool) pkt {
	p := pkt{src: src, dst: dst, sport: id}
	v6 := netip.MustParseAddr(src).Is6()
	switch {
	case v6 && reply:
		p.proto, p.icmpType = protoICMPv6, 129
	case v6:
		p.proto, p.icmpType = protoICMPv6, 128
	case reply:
		p.proto, p.icmpType = protoICMP, 0
	default:
		p.proto, p.icmpType = protoICMP, 8
	}
	return p
}

// icmpErr builds an unreachable error from src to dst quoting inner.
func icmpErr(src, dst string, inner []byte) pkt {
	p := pkt{src: src, dst: dst, inner: inner, proto: protoICMP, icmpType: 3}
	if netip.MustParseAddr(src).Is6() {
		p.proto, p.icmpType = protoICMPv6, 1
	}
	return p
}

func (p pkt) l4() []byte {
	var b []byte
	switch p.proto {
	case protoTCP:
		b = make([]byte, 20+p.payload)
		binary.BigEndian.PutUint16(b, p.sport)
		binary.BigEndian.PutUint16(b[2:], p.dport)
		b[12] = 5 << 4
		b[13] = p.flags
	case protoUDP:
		b = make([]byte, 8+p.payload)
		binary.BigEndian.PutUint16(b, p.sport)
		binary.BigEndian.PutUint16(b[2:], p.dport)
		binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	case protoICMP, protoICMPv6:
		b = make([]byte, 8, 8+len(p.inner)+p.payload)
		b[0] = p.icmpType
		binary.BigEndian.PutUint16(b[4:], p.sport)
		b = append(b, p.inner...)
		b = append(b, make([]byte, p.payload)...)
	default:
		b = make([]byte, p.payload)
	}
	return b
}

func (p pkt) bytes() []byte {
	if p.raw != nil {
		return p.raw
	}
	src, dst := netip.MustParseAddr(p.src), netip.MustParseAddr(p.dst)
	l4 := p.l4()
	if src.Is4() {
		b := make([]byte, 20, 20+len(l4))
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(20+len(l4)))
		b[8] = 64
		b[9] = p.proto
		s, d := src.As4(), dst.As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		return append(b, l4...)
	}
	b := make([]byte, 40, 40+len(l4))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(l4)))
	b[6] = p.proto
	b[7] = 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, l4...)
}
