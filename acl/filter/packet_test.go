package filter

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

const (
	me4   = "100.64.0.1"
	peer4 = "100.64.0.2"
	me6   = "fd00:1::1"
	peer6 = "fd00:1::2"
)

func mutate(b []byte, f func([]byte)) []byte {
	f(b)
	return b
}

func TestParseFailsClosed(t *testing.T) {
	v4tcp := func() []byte { return tcp(peer4, me4, 1000, 22, tcpSYN).bytes() }
	v6tcp := func() []byte { return tcp(peer6, me6, 1000, 22, tcpSYN).bytes() }
	// withNext returns an IPv6 packet whose next header is nh, followed by
	// what looks like a TCP header to port 22.
	withNext := func(nh uint8) []byte {
		return mutate(v6tcp(), func(b []byte) { b[6] = nh })
	}
	tests := []struct {
		name  string
		pkt   []byte
		want  Reason
		kind  kind
		sport uint16
		dport uint16
	}{
		{"empty", nil, DropMalformed, 0, 0, 0},
		{"version 5", mutate(v4tcp(), func(b []byte) { b[0] = 0x55 }), DropMalformed, 0, 0, 0},
		{"ipv4 tcp", v4tcp(), reasonNone, kindTCP, 1000, 22},
		{"ipv4 header too short", v4tcp()[:19], DropMalformed, 0, 0, 0},
		{"ipv4 ihl below 5", mutate(v4tcp(), func(b []byte) { b[0] = 0x44 }), DropMalformed, 0, 0, 0},
		{"ipv4 ihl beyond packet", mutate(v4tcp(), func(b []byte) { b[0] = 0x4f; binary.BigEndian.PutUint16(b[2:], 40) }), DropMalformed, 0, 0, 0},
		{"ipv4 total length beyond buffer", mutate(v4tcp(), func(b []byte) { binary.BigEndian.PutUint16(b[2:], 41) }), DropMalformed, 0, 0, 0},
		{"ipv4 total length below header", mutate(v4tcp(), func(b []byte) { binary.BigEndian.PutUint16(b[2:], 19) }), DropMalformed, 0, 0, 0},
		{"ipv4 total length cuts tcp header", mutate(v4tcp(), func(b []byte) { binary.BigEndian.PutUint16(b[2:], 39) }), DropMalformed, 0, 0, 0},
		{"ipv4 trailing bytes ignored", append(v4tcp(), 1, 2, 3), reasonNone, kindTCP, 1000, 22},
		{"ipv4 options skipped", func() []byte {
			b := tcp(peer4, me4, 1000, 22, tcpSYN).bytes()
			b = append(b[:20:20], append([]byte{1, 1, 1, 0}, b[20:]...)...) // NOP NOP NOP EOL
			b[0] = 0x46
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
			return b
		}(), reasonNone, kindTCP, 1000, 22},
		{"ipv4 more fragments", mutate(v4tcp(), func(b []byte) { b[6] = 0x20 }), DropFragment, 0, 0, 0},
		{"ipv4 later fragment", mutate(v4tcp(), func(b []byte) { b[7] = 1 }), DropFragment, 0, 0, 0},
		{"ipv4 don't fragment is fine", mutate(v4tcp(), func(b []byte) { b[6] = 0x40 }), reasonNone, kindTCP, 1000, 22},
		{"tcp data offset below 5", mutate(v4tcp(), func(b []byte) { b[32] = 4 << 4 }), DropMalformed, 0, 0, 0},
		{"tcp data offset beyond packet", mutate(v4tcp(), func(b []byte) { b[32] = 6 << 4 }), DropMalformed, 0, 0, 0},
		{"udp", udp(peer4, me4, 5000, 53).bytes(), reasonNone, kindUDP, 5000, 53},
		{"udp length below 8", mutate(udp(peer4, me4, 5000, 53).bytes(), func(b []byte) { b[25] = 7 }), DropMalformed, 0, 0, 0},
		{"udp length beyond packet", mutate(udp(peer4, me4, 5000, 53).bytes(), func(b []byte) { b[25] = 9 }), DropMalformed, 0, 0, 0},
		{"icmp echo request", echo(peer4, me4, 7, false).bytes(), reasonNone, kindEchoRequest, 7, 0},
		{"icmp echo reply", echo(peer4, me4, 7, true).bytes(), reasonNone, kindEchoReply, 0, 7},
		{"icmp truncated", echo(peer4, me4, 7, false).bytes()[:27], DropMalformed, 0, 0, 0},
		{"icmp error", icmpErr(peer4, me4, udp(me4, peer4, 1, 2).bytes()).bytes(), reasonNone, kindICMPError, 0, 0},
		{"icmp timestamp", mutate(echo(peer4, me4, 7, false).bytes(), func(b []byte) { b[20] = 13 }), reasonNone, kindICMPOther, 0, 0},
		{"gre has no ports", pkt{src: peer4, dst: me4, proto: 47, payload: 8}.bytes(), reasonNone, kindOther, 0, 0},
		{"sctp has no ports", pkt{src: peer4, dst: me4, proto: 132, payload: 12}.bytes(), reasonNone, kindOther, 0, 0},
		{"icmpv6 number inside ipv4 is not icmp", pkt{src: peer4, dst: me4, proto: protoICMPv6, payload: 8}.bytes(), reasonNone, kindOther, 0, 0},
		{"ipv6 tcp", v6tcp(), reasonNone, kindTCP, 1000, 22},
		{"ipv6 header too short", v6tcp()[:39], DropMalformed, 0, 0, 0},
		{"ipv6 payload length beyond buffer", mutate(v6tcp(), func(b []byte) { b[5]++ }), DropMalformed, 0, 0, 0},
		{"ipv6 payload length cuts tcp header", mutate(v6tcp(), func(b []byte) { b[5]-- }), DropMalformed, 0, 0, 0},
		{"ipv6 hop-by-hop", withNext(0), DropIPv6ExtHeader, 0, 0, 0},
		{"ipv6 routing", withNext(43), DropIPv6ExtHeader, 0, 0, 0},
		{"ipv6 fragment", withNext(44), DropFragment, 0, 0, 0},
		{"ipv6 destination options", withNext(60), DropIPv6ExtHeader, 0, 0, 0},
		{"ipv6 authentication header", withNext(51), DropIPv6ExtHeader, 0, 0, 0},
		{"ipv6 no next header", withNext(59), DropIPv6ExtHeader, 0, 0, 0},
		{"ipv6 mobility", withNext(135), DropIPv6ExtHeader, 0, 0, 0},
		{"ipv6 experimental", withNext(253), DropIPv6ExtHeader, 0, 0, 0},
		{"ipv6 esp is opaque", withNext(50), reasonNone, kindOther, 0, 0},
		{"icmpv6 echo", echo(peer6, me6, 9, false).bytes(), reasonNone, kindEchoRequest, 9, 0},
		{"icmpv6 packet too big", mutate(icmpErr(peer6, me6, tcp(me6, peer6, 1, 2, 0).bytes()).bytes(), func(b []byte) { b[40] = 2 }), reasonNone, kindICMPError, 0, 0},
		{"icmp number inside ipv6 is not icmp", pkt{src: peer6, dst: me6, proto: protoICMP, payload: 8}.bytes(), reasonNone, kindOther, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p packet
			got := parse(tt.pkt, &p)
			if got != tt.want {
				t.Fatalf("parse = %v, want %v", got, tt.want)
			}
			if got != reasonNone {
				return
			}
			if p.kind != tt.kind || p.srcPort != tt.sport || p.dstPort != tt.dport {
				t.Errorf("parsed kind %d ports %d->%d, want kind %d ports %d->%d", p.kind, p.srcPort, p.dstPort, tt.kind, tt.sport, tt.dport)
			}
		})
	}
}

// TestTruncatedPacketsAreMalformed cuts valid packets at every length and
// checks that none of the cuts parses.
func TestTruncatedPacketsAreMalformed(t *testing.T) {
	for _, p := range []pkt{
		tcp(peer4, me4, 1, 2, tcpSYN), udp(peer4, me4, 1, 2), echo(peer4, me4, 1, false),
		tcp(peer6, me6, 1, 2, tcpSYN), udp(peer6, me6, 1, 2), echo(peer6, me6, 1, true),
	} {
		b := p.bytes()
		for n := 0; n < len(b); n++ {
			var q packet
			if r := parse(b[:n], &q); r != DropMalformed {
				t.Errorf("%s/%d cut to %d bytes: parse = %v, want %v", p.src, p.proto, n, r, DropMalformed)
			}
		}
	}
}

func TestParseInnerQuote(t *testing.T) {
	tests := []struct {
		name  string
		v     uint8
		quote []byte
		ok    bool
		kind  kind
	}{
		{"ipv4 udp", 4, udp(me4, peer4, 1, 2).bytes(), true, kindUDP},
		{"ipv4 tcp header cut to 8 bytes", 4, tcp(me4, peer4, 1, 2, 0).bytes()[:28], true, kindTCP},
		{"ipv4 cut below 8 bytes", 4, tcp(me4, peer4, 1, 2, 0).bytes()[:27], false, 0},
		{"ipv4 echo", 4, echo(me4, peer4, 3, false).bytes(), true, kindEchoRequest},
		{"ipv4 quoting an error", 4, icmpErr(me4, peer4, nil).bytes(), false, 0},
		{"ipv4 later fragment", 4, mutate(udp(me4, peer4, 1, 2).bytes(), func(b []byte) { b[7] = 1 }), false, 0},
		{"ipv6 quote in ipv4 error", 4, udp(me6, peer6, 1, 2).bytes(), false, 0},
		{"ipv6 udp", 6, udp(me6, peer6, 1, 2).bytes(), true, kindUDP},
		{"ipv6 extension header", 6, mutate(udp(me6, peer6, 1, 2).bytes(), func(b []byte) { b[6] = 0 }), false, 0},
		{"ipv6 cut", 6, udp(me6, peer6, 1, 2).bytes()[:47], false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q packet
			if ok := parseInner(tt.v, tt.quote, &q); ok != tt.ok || (ok && q.kind != tt.kind) {
				t.Errorf("parseInner = %v kind %d, want %v kind %d", ok, q.kind, tt.ok, tt.kind)
			}
		})
	}
}

// FuzzParse checks that no input makes the parser panic or read past what
// the headers claim, that a packet it accepts is self-consistent, and that
// the whole filter survives it in both directions.
func FuzzParse(f *testing.F) {
	for _, p := range []pkt{
		tcp(peer4, me4, 1000, 22, tcpSYN), udp(peer4, me4, 5, 53), echo(peer4, me4, 1, false),
		icmpErr(peer4, me4, udp(me4, peer4, 1, 2).bytes()),
		tcp(peer6, me6, 1000, 22, tcpSYN|tcpACK), udp(peer6, me6, 5, 53), echo(peer6, me6, 1, true),
		icmpErr(peer6, me6, tcp(me6, peer6, 1, 2, 0).bytes()),
		{src: peer4, dst: me4, proto: 47, payload: 4},
	} {
		f.Add(p.bytes())
	}
	flt := New(Options{FlowCapacity: 64})
	if err := flt.SetRules([]wire.FilterRule{{
		ID:        "all",
		Sources:   []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
		Protocols: []wire.Proto{wire.ProtoTCP, wire.ProtoUDP, wire.ProtoICMP, wire.ProtoICMPv6, 47},
		Ports:     []wire.PortRange{{First: 1, Last: 1024}},
		Expires:   time.Now().Add(time.Hour),
	}}, []netip.Prefix{netip.MustParsePrefix(me4 + "/32"), netip.MustParsePrefix(me6 + "/128")}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p packet
		r := parse(b, &p)
		switch r {
		case reasonNone:
			if p.v != 4 && p.v != 6 || int(p.v) != int(b[0]>>4) {
				t.Fatalf("version %d from first byte %#x", p.v, b[0])
			}
			if p.v == 6 && isIPv6ExtHeader(p.proto) {
				t.Fatalf("ipv6 extension header %d parsed as upper layer", p.proto)
			}
			hasPorts := p.kind == kindTCP || p.kind == kindUDP
			if hasPorts != (p.proto == protoTCP || p.proto == protoUDP) {
				t.Fatalf("kind %d for protocol %d", p.kind, p.proto)
			}
			if (p.kind == kindOther || p.kind == kindICMPOther || p.kind == kindICMPError) && (p.srcPort != 0 || p.dstPort != 0) {
				t.Fatalf("ports %d->%d on a packet of kind %d", p.srcPort, p.dstPort, p.kind)
			}
			if p.kind == kindICMPError {
				var q packet
				parseInner(p.v, p.inner, &q)
			}
		}
		// The IPv6 fast parser takes exactly the TCP and UDP packets
		// parse takes, and reads them the same way.
		var q packet
		if quick6(b, &q) {
			if r != reasonNone || p.v != 6 || p.kind != q.kind || p.proto != q.proto || p.src != q.src || p.dst != q.dst ||
				p.srcPort != q.srcPort || p.dstPort != q.dstPort || p.tcpFlags != q.tcpFlags {
				t.Fatalf("quick6 read %+v, parse %v %+v", q, r, p)
			}
		} else if r == reasonNone && p.v == 6 && (p.kind == kindTCP || p.kind == kindUDP) {
			t.Fatalf("quick6 declined a packet parse reads as %+v", p)
		}
		switch r {
		case reasonNone:
		case DropMalformed, DropFragment, DropIPv6ExtHeader:
		default:
			t.Fatalf("parse returned %v", r)
		}
		now := flt.Now()
		flt.RunInAt(b, now)
		flt.RunOutAt(b, now)
	})
}

// FuzzFastPathAgrees holds RunInAt's and RunOutAt's fast path (the
// IPv4 TCP/UDP parser written out in registers, the lock-free lookup) to
// the general parser and the locked table code: two filters with the same
// rules see the same packets, one through RunInAt/RunOutAt, the other
// through the general path alone, and must give the same reason every
// time. Each input goes out, then comes back mirrored (addresses and ports
// swapped), then goes in as it is, so flows are created, answered and hit.
func FuzzFastPathAgrees(f *testing.F) {
	for _, p := range []pkt{
		tcp(me4, peer4, 40000, 443, tcpSYN), tcp(peer4, me4, 1000, 22, tcpSYN), tcp(me4, peer4, 40000, 443, tcpACK|tcpFIN),
		udp(me4, peer4, 5353, 53), udp(peer4, me4, 5000, 53), tcp(me6, peer6, 40000, 443, tcpSYN), udp(peer6, me6, 1, 53),
		echo(me4, peer4, 1, false), {src: peer4, dst: me4, proto: 47, payload: 4},
	} {
		f.Add(p.bytes(), uint8(0))
	}
	rules := []wire.FilterRule{
		{ID: "ssh", Sources: prefixes(peer4, peer6), Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{{First: 1, Last: 1024}}},
		{ID: "dns", Sources: prefixes("100.64.0.0/10", "fd00::/8"), Protocols: []wire.Proto{wire.ProtoUDP}, Ports: []wire.PortRange{{First: 53, Last: 53}}},
		{ID: "ping", Sources: prefixes(peer4, peer6), Protocols: []wire.Proto{wire.ProtoICMP, wire.ProtoICMPv6}},
	}
	clk := newFakeClock()
	// No eviction: the two tables hash differently, so they would
	// evict different flows.
	fast, general := New(Options{Now: clk.Now, FlowCapacity: 1 << 16}), New(Options{Now: clk.Now, FlowCapacity: 1 << 16})
	// The same hash seeds, so that the half-open notes (which a newer
	// note may overwrite) are kept and lost alike.
	general.flows.seed, general.flows.hi4 = fast.flows.seed, fast.flows.hi4
	for _, flt := range []*Filter{fast, general} {
		if err := flt.SetRules(rules, self); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, advance uint8) {
		clk.Advance(time.Duration(advance) * 100 * time.Microsecond)
		now := fast.Now()
		check := func(what string, b []byte) {
			_, rIn := fast.RunInAt(b, now)
			var p packet
			if r := general.runIn(b, &p, now); r != rIn {
				t.Fatalf("%s in: fast path %v, general path %v (packet %x)", what, rIn, r, b)
			}
			_, rOut := fast.RunOutAt(b, now)
			p = packet{}
			if r := general.runOut(b, &p, now); r != rOut {
				t.Fatalf("%s out: fast path %v, general path %v (packet %x)", what, rOut, r, b)
			}
		}
		check("as is", b)
		check("mirrored", mirror(b))
		check("as is again", b)
	})
}

// mirror returns a copy of IP packet b with source and destination
// addresses, and TCP or UDP ports, swapped (or b itself if too short).
func mirror(b []byte) []byte {
	m := append([]byte(nil), b...)
	var l4 int
	switch {
	case len(m) >= 20 && m[0]>>4 == 4:
		for i := range 4 {
			m[12+i], m[16+i] = m[16+i], m[12+i]
		}
		l4 = int(m[0]&0x0f) * 4
	case len(m) >= 40 && m[0]>>4 == 6:
		for i := range 16 {
			m[8+i], m[24+i] = m[24+i], m[8+i]
		}
		l4 = 40
	default:
		return m
	}
	if len(m) >= l4+4 {
		m[l4], m[l4+1], m[l4+2], m[l4+3] = m[l4+2], m[l4+3], m[l4], m[l4+1]
	}
	return m
}
