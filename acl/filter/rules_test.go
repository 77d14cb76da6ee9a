package filter

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// referenceMatch is the obviously correct matcher: every rule, every
// field, read straight from wire.FilterRule as its documentation says.
func referenceMatch(rules []wire.FilterRule, self []netip.Prefix, proto uint8, src, dst netip.Addr, dport uint16, now time.Time) Reason {
	local := false
	for _, p := range self {
		local = local || p.Contains(dst)
	}
	if !local {
		return DropNotLocal
	}
	r := DropNoRule
	for _, rule := range rules {
		if compileErr(rule) {
			continue
		}
		srcOK := slices.ContainsFunc(rule.Sources, func(p netip.Prefix) bool { return p.Contains(src) })
		protoOK := slices.Contains(rule.Protocols, wire.Proto(proto))
		// Ports matter for TCP and UDP alone; for those, no ports is no
		// match (there is no wildcard).
		portOK := true
		if proto == protoTCP || proto == protoUDP {
			portOK = slices.ContainsFunc(rule.Ports, func(pr wire.PortRange) bool { return dport >= pr.First && dport <= pr.Last })
		}
		if !srcOK || !protoOK || !portOK {
			continue
		}
		if rule.Expires.IsZero() || now.Before(rule.Expires) {
			return AcceptRule
		}
		r = DropExpired
	}
	return r
}

// compileErr reports whether rule is invalid, independently of compile.
func compileErr(rule wire.FilterRule) bool {
	for _, p := range rule.Sources {
		if !p.IsValid() {
			return true
		}
	}
	for _, pr := range rule.Ports {
		if pr.First == 0 || pr.First > pr.Last {
			return true
		}
	}
	for _, p := range rule.Protocols {
		switch p {
		case 0, 255, 33, 132, 136, 43, 44, 51, 59, 60, 135, 139, 140, 253, 254:
			return true
		}
	}
	return false
}

// randAddr draws addresses from a small space so that rules and packets
// overlap often, with an occasional address from anywhere.
func randAddr(rng *rand.Rand, v6 bool) netip.Addr {
	if v6 {
		var b [16]byte
		b[0], b[1] = 0xfd, 0x00
		if rng.IntN(10) == 0 {
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
		} else {
			b[14], b[15] = byte(rng.IntN(4)), byte(rng.IntN(256))
		}
		return netip.AddrFrom16(b)
	}
	if rng.IntN(10) == 0 {
		return netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
	}
	return netip.AddrFrom4([4]byte{100, 64, byte(rng.IntN(4)), byte(rng.IntN(256))})
}

func randRule(rng *rand.Rand, i int, now time.Time) wire.FilterRule {
	r := wire.FilterRule{ID: fmt.Sprint("r", i)}
	for range rng.IntN(5) {
		v6 := rng.IntN(2) == 0
		a := randAddr(rng, v6)
		var bits int
		switch {
		case rng.IntN(20) == 0:
			bits = 0
		case v6:
			bits = 104 + rng.IntN(25)
		default:
			bits = 20 + rng.IntN(13)
		}
		r.Sources = append(r.Sources, netip.PrefixFrom(a, bits))
	}
	protos := []wire.Proto{wire.ProtoTCP, wire.ProtoUDP, wire.ProtoICMP, wire.ProtoICMPv6, 47, 132}
	for range rng.IntN(4) {
		r.Protocols = append(r.Protocols, protos[rng.IntN(len(protos))])
	}
	for range rng.IntN(4) {
		a, b := uint16(rng.IntN(100)), uint16(rng.IntN(100))
		if rng.IntN(10) != 0 {
			a, b = min(a, b), max(a, b)
		}
		if rng.IntN(30) == 0 {
			a = 0
		}
		r.Ports = append(r.Ports, wire.PortRange{First: a, Last: b})
	}
	switch rng.IntN(4) {
	case 0:
		r.Expires = now.Add(-time.Duration(rng.IntN(100)) * time.Second)
	case 1:
		r.Expires = now.Add(time.Duration(1+rng.IntN(100)) * time.Second)
	}
	return r
}

// TestMatchAgreesWithReference compiles random rule sets and checks the
// compiled matcher against referenceMatch on random packets.
func TestMatchAgreesWithReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	selfs := []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32"), netip.MustParsePrefix("fd00::1/128"), netip.MustParsePrefix("100.64.1.0/30")}
	protos := []uint8{protoTCP, protoUDP, protoICMP, protoICMPv6, 47, 132, 50}
	for round := range 300 {
		var rules []wire.FilterRule
		for i := range rng.IntN(12) {
			rules = append(rules, randRule(rng, i, now))
		}
		rs, _ := compile(rules, selfs)
		for range 300 {
			v6 := rng.IntN(2) == 0
			src := randAddr(rng, v6)
			dst := selfs[rng.IntN(len(selfs))].Addr()
			if dst.Is6() != v6 {
				dst = randAddr(rng, v6)
			}
			if rng.IntN(10) == 0 {
				dst = randAddr(rng, v6)
			}
			proto := protos[rng.IntN(len(protos))]
			dport := uint16(rng.IntN(110))
			want := referenceMatch(rules, selfs, proto, src, dst, dport, now)
			v := uint8(4)
			if v6 {
				v = 6
			}
			got, _ := rs.match(v, proto, addrFrom(src), addrFrom(dst), dport, now.UnixNano())
			if got != want {
				t.Fatalf("round %d: %v -> %v proto %d port %d: compiled %v, reference %v\nrules: %+v", round, src, dst, proto, dport, got, want, rules)
			}
		}
	}
}

func TestPrefixRangeEdges(t *testing.T) {
	tests := []struct {
		prefix      string
		first, last addr
	}{
		{"0.0.0.0/0", addr{}, addr{lo: 0xffffffff}},
		{"100.64.0.0/10", addr{lo: 0x64400000}, addr{lo: 0x647fffff}},
		{"1.2.3.4/32", addr{lo: 0x01020304}, addr{lo: 0x01020304}},
		{"::/0", addr{}, addr{hi: ^uint64(0), lo: ^uint64(0)}},
		{"fd00::/8", addr{hi: 0xfd00 << 48}, addr{hi: 0xfdff_ffff_ffff_ffff, lo: ^uint64(0)}},
		{"fd00::/64", addr{hi: 0xfd00 << 48}, addr{hi: 0xfd00 << 48, lo: ^uint64(0)}},
		{"fd00::/65", addr{hi: 0xfd00 << 48}, addr{hi: 0xfd00 << 48, lo: 1<<63 - 1}},
		{"fd00::1/128", addr{hi: 0xfd00 << 48, lo: 1}, addr{hi: 0xfd00 << 48, lo: 1}},
	}
	for _, tt := range tests {
		first, last := prefixRange(netip.MustParsePrefix(tt.prefix))
		if first != tt.first || last != tt.last {
			t.Errorf("%s: range %x-%x, want %x-%x", tt.prefix, first, last, tt.first, tt.last)
		}
	}
}

func TestWholeAddressSpaceRules(t *testing.T) {
	all := allowPeer("0.0.0.0/0", "::/0", "255.255.255.255/32", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")
	f := newTestFilter(t, newFakeClock(), all)
	runSteps(t, f, []step{
		in(tcp("255.255.255.255", me4, 1, 2, tcpSYN), AcceptRule),
		in(tcp("0.0.0.0", me4, 1, 2, tcpSYN), AcceptRule),
		in(tcp("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", me6, 1, 2, tcpSYN), AcceptRule),
		in(tcp("::", me6, 1, 2, tcpSYN), AcceptRule),
	})
}
