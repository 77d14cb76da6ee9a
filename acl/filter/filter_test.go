package filter

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// fakeClock is a settable clock for tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var self = []netip.Prefix{netip.MustParsePrefix(me4 + "/32"), netip.MustParsePrefix(me6 + "/128")}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if !strings.Contains(s, "/") {
			a := netip.MustParseAddr(s)
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// allowPeer is the interim rule: the peer may reach every port over TCP,
// UDP, ICMP and ICMPv6.
func allowPeer(srcs ...string) wire.FilterRule {
	return wire.FilterRule{
		ID:        "interim-allow-peers",
		Sources:   prefixes(srcs...),
		Protocols: []wire.Proto{wire.ProtoTCP, wire.ProtoUDP, wire.ProtoICMP, wire.ProtoICMPv6},
		Ports:     []wire.PortRange{{First: 1, Last: 65535}},
	}
}

func newTestFilter(t *testing.T, clk *fakeClock, rules ...wire.FilterRule) *Filter {
	t.Helper()
	f := New(Options{Now: clk.Now})
	if err := f.SetRules(rules, self); err != nil {
		t.Fatalf("SetRules: %v", err)
	}
	return f
}

type step struct {
	in   bool // inbound (RunIn) or outbound (RunOut)
	pkt  pkt
	want Reason
}

func in(p pkt, want Reason) step  { return step{in: true, pkt: p, want: want} }
func out(p pkt, want Reason) step { return step{pkt: p, want: want} }

func runSteps(t *testing.T, f *Filter, steps []step) {
	t.Helper()
	for i, s := range steps {
		var v Verdict
		var r Reason
		if s.in {
			v, r = f.RunIn(s.pkt.bytes())
		} else {
			v, r = f.RunOut(s.pkt.bytes())
		}
		if r != s.want || v != s.want.Verdict() {
			dir := "out"
			if s.in {
				dir = "in"
			}
			t.Fatalf("step %d (%s %s->%s proto %d %d->%d): got %v %v, want %v", i, dir, s.pkt.src, s.pkt.dst, s.pkt.proto, s.pkt.sport, s.pkt.dport, v, r, s.want)
		}
	}
}

func TestStatefulFiltering(t *testing.T) {
	const other4 = "100.64.0.3"
	ssh := wire.FilterRule{ID: "ssh", Sources: prefixes(peer4, peer6), Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{{First: 22, Last: 22}}}
	tests := []struct {
		name  string
		rules []wire.FilterRule
		steps []step
	}{
		{"no rules drops every new inbound flow", nil, []step{
			in(tcp(peer4, me4, 1000, 22, tcpSYN), DropNoRule),
			in(udp(peer4, me4, 1000, 53), DropNoRule),
			in(echo(peer4, me4, 1, false), DropNoRule),
			in(tcp(peer6, me6, 1000, 22, tcpSYN), DropNoRule),
		}},
		{"tcp this node opened admits its replies", nil, []step{
			out(tcp(me4, peer4, 40000, 443, tcpSYN), AcceptOutbound),
			in(tcp(peer4, me4, 443, 40000, tcpSYN|tcpACK), AcceptEstablished),
			out(tcp(me4, peer4, 40000, 443, tcpACK), AcceptOutbound),
			in(tcp(peer4, me4, 443, 40000, tcpACK), AcceptEstablished),
			in(tcp(peer4, me4, 443, 40001, tcpACK), DropNoRule),
			in(tcp(other4, me4, 443, 40000, tcpACK), DropNoRule),
		}},
		{"tcp segment without a seen SYN creates no state", nil, []step{
			out(tcp(me4, peer4, 40000, 443, tcpACK), AcceptOutboundUntracked),
			in(tcp(peer4, me4, 443, 40000, tcpACK), DropNoRule),
		}},
		{"udp this node sent admits replies from that port only", nil, []step{
			out(udp(me4, peer4, 5353, 53), AcceptOutbound),
			in(udp(peer4, me4, 53, 5353), AcceptEstablished),
			in(udp(peer4, me4, 54, 5353), DropNoRule),
			out(udp(me6, peer6, 5353, 53), AcceptOutbound),
			in(udp(peer6, me6, 53, 5353), AcceptEstablished),
		}},
		{"echo this node sent admits the reply with its id", nil, []step{
			out(echo(me4, peer4, 77, false), AcceptOutbound),
			in(echo(peer4, me4, 77, true), AcceptEstablished),
			in(echo(peer4, me4, 78, true), DropNoRule),
			in(echo(peer4, me4, 77, false), DropNoRule), // their request is not our reply
			out(echo(me6, peer6, 77, false), AcceptOutbound),
			in(echo(peer6, me6, 77, true), AcceptEstablished),
		}},
		{"rule admits a new inbound flow by source, protocol and port", []wire.FilterRule{ssh}, []step{
			in(tcp(peer4, me4, 1000, 22, tcpSYN), AcceptRule),
			out(tcp(me4, peer4, 22, 1000, tcpSYN|tcpACK), AcceptOutbound),
			in(tcp(peer4, me4, 1000, 22, tcpACK), AcceptEstablished),
			in(tcp(peer4, me4, 1000, 23, tcpSYN), DropNoRule),
			in(udp(peer4, me4, 1000, 22), DropNoRule),
			in(tcp(other4, me4, 1000, 22, tcpSYN), DropNoRule),
			in(tcp(peer6, me6, 1000, 22, tcpSYN), AcceptRule),
		}},
		{"packets to another address never start a flow", []wire.FilterRule{allowPeer(peer4)}, []step{
			in(tcp(peer4, other4, 1000, 22, tcpSYN), DropNotLocal),
			in(tcp(peer4, me4, 1000, 22, tcpSYN), AcceptRule),
		}},
		{"icmp error quoting a flow this node started is related", nil, []step{
			out(udp(me4, peer4, 5000, 9999), AcceptOutbound),
			in(icmpErr(peer4, me4, udp(me4, peer4, 5000, 9999).bytes()), AcceptRelated),
			in(icmpErr(peer4, me4, udp(me4, peer4, 5001, 9999).bytes()), DropNoRule),
			in(icmpErr(peer4, me4, udp(other4, peer4, 5000, 9999).bytes()), DropNoRule),
			// A third host may not speak for the flow with peer4.
			in(icmpErr(other4, me4, udp(me4, peer4, 5000, 9999).bytes()), DropNoRule),
			out(tcp(me6, peer6, 5000, 80, tcpSYN), AcceptOutbound),
			in(icmpErr(peer6, me6, tcp(me6, peer6, 5000, 80, tcpSYN).bytes()), AcceptRelated),
		}},
		{"untracked protocols pass out but need a rule to come in", nil, []step{
			out(pkt{src: me4, dst: peer4, proto: 47, payload: 4}, AcceptOutboundUntracked),
			in(pkt{src: peer4, dst: me4, proto: 47, payload: 4}, DropNoRule),
		}},
		{"a rule for a portless protocol admits it", []wire.FilterRule{{ID: "gre", Sources: prefixes(peer4), Protocols: []wire.Proto{47}, Ports: []wire.PortRange{{First: 1, Last: 1}}}}, []step{
			in(pkt{src: peer4, dst: me4, proto: 47, payload: 4}, AcceptRule),
			in(tcp(peer4, me4, 1, 1, tcpSYN), DropNoRule),
		}},
		{"truncated packets never reach the rules", []wire.FilterRule{allowPeer(peer4, peer6)}, []step{
			in(pkt{src: peer4, dst: me4, raw: udp(peer4, me4, 1, 53).bytes()[:27]}, DropMalformed),
			in(pkt{src: peer6, dst: me6, raw: tcp(peer6, me6, 1, 22, tcpSYN).bytes()[:59]}, DropMalformed),
		}},
		{"tcp reset ends the flow after the transitory timeout", nil, []step{
			out(tcp(me4, peer4, 40000, 443, tcpSYN), AcceptOutbound),
			in(tcp(peer4, me4, 443, 40000, tcpRST|tcpACK), AcceptEstablished),
			// A new inbound SYN on a closed flow's ports is a new flow.
			in(tcp(peer4, me4, 443, 40000, tcpSYN), DropNoRule),
		}},
		{"an outbound SYN reuses a closed flow's ports", nil, []step{
			out(tcp(me4, peer4, 40000, 443, tcpSYN), AcceptOutbound),
			in(tcp(peer4, me4, 443, 40000, tcpRST|tcpACK), AcceptEstablished),
			out(tcp(me4, peer4, 40000, 443, tcpSYN), AcceptOutbound),
			in(tcp(peer4, me4, 443, 40000, tcpSYN|tcpACK), AcceptEstablished),
		}},
		{"malformed outbound packets are dropped", nil, []step{
			out(pkt{src: me4, dst: peer4, raw: tcp(me4, peer4, 1, 2, tcpSYN).bytes()[:30]}, DropMalformed),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, newTestFilter(t, newFakeClock(), tt.rules...), tt.steps)
		})
	}
}

func TestFragmentsAndExtensionHeadersAreDroppedEvenWhenAllowed(t *testing.T) {
	f := newTestFilter(t, newFakeClock(), allowPeer(peer4, peer6))
	frag := tcp(peer4, me4, 1000, 22, tcpSYN).bytes()
	frag[6] = 0x20 // more fragments
	if _, r := f.RunIn(frag); r != DropFragment {
		t.Errorf("ipv4 first fragment: %v, want %v", r, DropFragment)
	}
	ext := tcp(peer6, me6, 1000, 22, tcpSYN).bytes()
	ext[6] = 60 // destination options, followed by what looks like TCP
	if _, r := f.RunIn(ext); r != DropIPv6ExtHeader {
		t.Errorf("ipv6 with destination options: %v, want %v", r, DropIPv6ExtHeader)
	}
}

func TestRevokedPeerLosesEstablishedFlow(t *testing.T) {
	clk := newFakeClock()
	f := newTestFilter(t, clk, allowPeer(peer4))
	runSteps(t, f, []step{
		in(tcp(peer4, me4, 1000, 22, tcpSYN), AcceptRule),
		out(tcp(me4, peer4, 22, 1000, tcpSYN|tcpACK), AcceptOutbound),
		in(tcp(peer4, me4, 1000, 22, tcpACK), AcceptEstablished),
		in(udp(peer4, me4, 1000, 53), AcceptRule),
	})
	if err := f.SetRules(nil, self); err != nil {
		t.Fatal(err)
	}
	runSteps(t, f, []step{
		in(tcp(peer4, me4, 1000, 22, tcpACK), DropRevoked),
		// This node's side of the connection keeps talking; that must
		// not revive the flow as if this node had opened it.
		out(tcp(me4, peer4, 22, 1000, tcpACK), AcceptOutboundUntracked),
		out(udp(me4, peer4, 53, 1000), AcceptOutboundUntracked),
		in(tcp(peer4, me4, 1000, 22, tcpACK), DropRevoked),
		in(udp(peer4, me4, 1000, 53), DropRevoked),
		in(tcp(peer4, me4, 1001, 22, tcpSYN), DropNoRule),
	})
	// Access restored: the same flow passes again.
	if err := f.SetRules([]wire.FilterRule{allowPeer(peer4)}, self); err != nil {
		t.Fatal(err)
	}
	runSteps(t, f, []step{in(tcp(peer4, me4, 1000, 22, tcpACK), AcceptEstablished)})
}

func TestFlowsThisNodeStartedSurviveRuleChange(t *testing.T) {
	f := newTestFilter(t, newFakeClock(), allowPeer(peer4))
	runSteps(t, f, []step{
		out(tcp(me4, peer4, 40000, 443, tcpSYN), AcceptOutbound),
		in(tcp(peer4, me4, 443, 40000, tcpSYN|tcpACK), AcceptEstablished),
	})
	if err := f.SetRules(nil, self); err != nil {
		t.Fatal(err)
	}
	runSteps(t, f, []step{in(tcp(peer4, me4, 443, 40000, tcpACK), AcceptEstablished)})
}

func TestRuleChangeNarrowingPortsCutsOnlyThatPort(t *testing.T) {
	f := newTestFilter(t, newFakeClock(), allowPeer(peer4))
	runSteps(t, f, []step{
		in(tcp(peer4, me4, 1000, 22, tcpSYN), AcceptRule),
		out(tcp(me4, peer4, 22, 1000, tcpSYN|tcpACK), AcceptOutbound),
		in(tcp(peer4, me4, 1000, 80, tcpSYN), AcceptRule),
		out(tcp(me4, peer4, 80, 1000, tcpSYN|tcpACK), AcceptOutbound),
	})
	narrow := allowPeer(peer4)
	narrow.Ports = []wire.PortRange{{First: 80, Last: 80}}
	if err := f.SetRules([]wire.FilterRule{narrow}, self); err != nil {
		t.Fatal(err)
	}
	runSteps(t, f, []step{
		in(tcp(peer4, me4, 1000, 22, tcpACK), DropRevoked),
		in(tcp(peer4, me4, 1000, 80, tcpACK), AcceptEstablished),
	})
}

func TestExpiredRuleStopsFlowOnLocalClock(t *testing.T) {
	clk := newFakeClock()
	grant := allowPeer(peer4)
	grant.ID = "grant-1"
	grant.Expires = clk.Now().Add(time.Minute)
	f := newTestFilter(t, clk, grant)
	runSteps(t, f, []step{
		in(tcp(peer4, me4, 1000, 5432, tcpSYN), AcceptRule),
		out(tcp(me4, peer4, 5432, 1000, tcpSYN|tcpACK), AcceptOutbound),
	})
	clk.Advance(59 * time.Second)
	runSteps(t, f, []step{in(tcp(peer4, me4, 1000, 5432, tcpACK), AcceptEstablished)})
	clk.Advance(time.Second)
	runSteps(t, f, []step{
		in(tcp(peer4, me4, 1000, 5432, tcpACK), DropRevoked),
		in(tcp(peer4, me4, 1001, 5432, tcpSYN), DropExpired),
	})
}

func TestLongestLivedRuleKeepsFlow(t *testing.T) {
	clk := newFakeClock()
	short, long := allowPeer(peer4), allowPeer(peer4)
	short.ID, short.Expires = "short", clk.Now().Add(time.Minute)
	long.ID, long.Expires = "long", clk.Now().Add(time.Hour)
	f := New(Options{Now: clk.Now, Timeouts: Timeouts{UDP: 24 * time.Hour}})
	if err := f.SetRules([]wire.FilterRule{short, long}, self); err != nil {
		t.Fatal(err)
	}
	runSteps(t, f, []step{in(udp(peer4, me4, 1000, 53), AcceptRule)})
	clk.Advance(2 * time.Minute)
	runSteps(t, f, []step{in(udp(peer4, me4, 1000, 53), AcceptEstablished)})
	clk.Advance(time.Hour)
	runSteps(t, f, []step{in(udp(peer4, me4, 1000, 53), DropRevoked)})
}

func TestIdleFlowsTimeOut(t *testing.T) {
	clk := newFakeClock()
	f := newTestFilter(t, clk)
	tm := DefaultTimeouts()
	runSteps(t, f, []step{
		out(udp(me4, peer4, 5000, 53), AcceptOutbound),
		out(echo(me4, peer4, 1, false), AcceptOutbound),
		out(tcp(me4, peer4, 40000, 443, tcpSYN), AcceptOutbound),
		in(tcp(peer4, me4, 443, 40000, tcpSYN|tcpACK), AcceptEstablished),
	})
	clk.Advance(tm.ICMP + time.Second)
	runSteps(t, f, []step{
		in(echo(peer4, me4, 1, true), DropNoRule),
		in(udp(peer4, me4, 53, 5000), AcceptEstablished),
	})
	clk.Advance(tm.UDP + time.Second)
	runSteps(t, f, []step{
		in(udp(peer4, me4, 53, 5000), DropNoRule),
		in(tcp(peer4, me4, 443, 40000, tcpACK), AcceptEstablished), // established TCP lives long
	})
	clk.Advance(tm.TCPEstablished + time.Second)
	runSteps(t, f, []step{in(tcp(peer4, me4, 443, 40000, tcpACK), DropNoRule)})
}

func TestFlowTableIsBoundedAndEvictsOldest(t *testing.T) {
	clk := newFakeClock()
	f := New(Options{Now: clk.Now, FlowCapacity: 16})
	if err := f.SetRules(nil, self); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		clk.Advance(time.Millisecond)
		if _, r := f.RunOut(udp(me4, peer4, uint16(10000+i), 53).bytes()); r != AcceptOutbound {
			t.Fatalf("flow %d: %v", i, r)
		}
	}
	if n := f.Flows(); n > 16 {
		t.Fatalf("table holds %d flows, capacity 16", n)
	}
	// With 16 entries in one shard the newest flow is certainly kept and
	// the first is certainly gone.
	if _, r := f.RunIn(udp(peer4, me4, 53, 10999).bytes()); r != AcceptEstablished {
		t.Errorf("newest flow: %v", r)
	}
	if _, r := f.RunIn(udp(peer4, me4, 53, 10000).bytes()); r != DropNoRule {
		t.Errorf("oldest flow: %v", r)
	}
}

func TestInvalidRulesAreLeftOutNotWidened(t *testing.T) {
	good := allowPeer(peer4)
	good.Ports = []wire.PortRange{{First: 22, Last: 22}}
	bad := func(id string, mod func(*wire.FilterRule)) wire.FilterRule {
		r := allowPeer("100.64.0.0/10")
		r.ID = id
		mod(&r)
		return r
	}
	rules := []wire.FilterRule{
		good,
		bad("port-zero", func(r *wire.FilterRule) { r.Ports = []wire.PortRange{{First: 0, Last: 80}} }),
		bad("reversed", func(r *wire.FilterRule) { r.Ports = []wire.PortRange{{First: 90, Last: 80}} }),
		bad("bad-prefix", func(r *wire.FilterRule) { r.Sources = append(r.Sources, netip.Prefix{}) }),
		bad("sctp", func(r *wire.FilterRule) { r.Protocols = append(r.Protocols, 132) }),
		bad("hop-by-hop", func(r *wire.FilterRule) { r.Protocols = append(r.Protocols, 0) }),
		bad("fragment", func(r *wire.FilterRule) { r.Protocols = append(r.Protocols, 44) }),
	}
	f := New(Options{})
	err := f.SetRules(rules, self)
	if err == nil {
		t.Fatal("SetRules accepted invalid rules")
	}
	for _, id := range []string{"port-zero", "reversed", "bad-prefix", "sctp", "hop-by-hop", "fragment"} {
		if !strings.Contains(err.Error(), id) {
			t.Errorf("error does not name rule %q: %v", id, err)
		}
	}
	runSteps(t, f, []step{
		in(tcp(peer4, me4, 1000, 22, tcpSYN), AcceptRule),
		in(tcp(peer4, me4, 1000, 80, tcpSYN), DropNoRule),
		in(tcp("100.64.0.9", me4, 1000, 22, tcpSYN), DropNoRule),
	})
}

func TestEmptyFieldsMatchNothing(t *testing.T) {
	for _, mod := range []func(*wire.FilterRule){
		func(r *wire.FilterRule) { r.Sources = nil },
		func(r *wire.FilterRule) { r.Protocols = nil },
	} {
		r := allowPeer(peer4)
		mod(&r)
		f := newTestFilter(t, newFakeClock(), r)
		runSteps(t, f, []step{
			in(tcp(peer4, me4, 1000, 22, tcpSYN), DropNoRule),
			in(echo(peer4, me4, 1, false), DropNoRule),
		})
	}
}

// TestRulesWithoutPortsAdmitOnlyPortlessProtocols checks the rules the
// policy compiler sends for an "icmp" target (ICMP and ICMPv6, no Ports):
// they admit ICMP, while TCP and UDP without ports match nothing - ports
// are never a wildcard.
func TestRulesWithoutPortsAdmitOnlyPortlessProtocols(t *testing.T) {
	rule := func(protos ...wire.Proto) wire.FilterRule {
		return wire.FilterRule{ID: "no-ports", Sources: prefixes(peer4, peer6), Protocols: protos}
	}
	tests := []struct {
		name  string
		rule  wire.FilterRule
		steps []step
	}{
		{"icmp only admits echo both ways", rule(wire.ProtoICMP, wire.ProtoICMPv6), []step{
			in(echo(peer4, me4, 7, false), AcceptRule),
			out(echo(me4, peer4, 7, true), AcceptOutbound),
			in(echo(peer4, me4, 7, false), AcceptEstablished),
			in(echo(peer6, me6, 8, false), AcceptRule),
			out(echo(me6, peer6, 8, true), AcceptOutbound),
			in(tcp(peer4, me4, 1000, 22, tcpSYN), DropNoRule),
			in(udp(peer4, me4, 1000, 53), DropNoRule),
			in(tcp(peer6, me6, 1000, 22, tcpSYN), DropNoRule),
			in(echo("100.64.0.9", me4, 7, false), DropNoRule),
		}},
		{"icmpv4 only does not admit icmpv6", rule(wire.ProtoICMP), []step{
			in(echo(peer4, me4, 7, false), AcceptRule),
			in(echo(peer6, me6, 7, false), DropNoRule),
		}},
		{"tcp and udp without ports match nothing", rule(wire.ProtoTCP, wire.ProtoUDP), []step{
			in(tcp(peer4, me4, 1000, 1, tcpSYN), DropNoRule),
			in(tcp(peer4, me4, 1000, 65535, tcpSYN), DropNoRule),
			in(udp(peer4, me4, 1000, 53), DropNoRule),
			in(tcp(peer6, me6, 1000, 22, tcpSYN), DropNoRule),
			in(echo(peer4, me4, 7, false), DropNoRule),
		}},
		{"mixed rule without ports admits only its icmp", rule(wire.ProtoTCP, wire.ProtoICMP), []step{
			in(tcp(peer4, me4, 1000, 22, tcpSYN), DropNoRule),
			in(echo(peer4, me4, 7, false), AcceptRule),
		}},
		{"icmp rule with ports ignores them", func() wire.FilterRule {
			r := rule(wire.ProtoICMP)
			r.Ports = []wire.PortRange{{First: 22, Last: 22}}
			return r
		}(), []step{
			in(echo(peer4, me4, 7, false), AcceptRule),
			in(tcp(peer4, me4, 1000, 22, tcpSYN), DropNoRule),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, newTestFilter(t, newFakeClock(), tt.rule), tt.steps)
		})
	}
}

func TestCountersCountEveryVerdict(t *testing.T) {
	f := newTestFilter(t, newFakeClock(), allowPeer(peer4))
	runSteps(t, f, []step{
		in(tcp(peer4, me4, 1, 22, tcpSYN), AcceptRule),
		in(tcp(peer4, me4, 1, 22, tcpACK), AcceptRule), // the SYN left no entry; this makes it
		in(tcp(peer4, me4, 1, 22, tcpACK), AcceptEstablished),
		in(tcp(peer4, me4, 1, 22, tcpACK), AcceptEstablished),
		in(tcp("100.64.0.9", me4, 1, 22, tcpSYN), DropNoRule),
		out(tcp(me4, peer4, 22, 1, tcpACK), AcceptOutbound),
	})
	want := map[Reason]uint64{AcceptRule: 2, AcceptEstablished: 2, DropNoRule: 1, AcceptOutbound: 1}
	for r, n := range f.Counts() {
		if n != want[r] {
			t.Errorf("count %v = %d, want %d", r, n, want[r])
		}
	}
	for _, r := range Reasons() {
		if r.String() == "" || r.String() == "unknown" || r.String() == "none" {
			t.Errorf("reason %d has no name", r)
		}
	}
}

// TestConcurrentTrafficAndRuleSwaps runs packets from several goroutines
// while rules change; run with -race.
func TestConcurrentTrafficAndRuleSwaps(t *testing.T) {
	// Large enough that the churn below never evicts the flows checked at
	// the end; eviction itself is tested elsewhere.
	f := New(Options{FlowCapacity: 4096})
	allow, deny := []wire.FilterRule{allowPeer(peer4)}, []wire.FilterRule(nil)
	if err := f.SetRules(allow, self); err != nil {
		t.Fatal(err)
	}
	if _, r := f.RunOut(udp(me4, peer4, 2000, 53).bytes()); r != AcceptOutbound {
		t.Fatalf("own flow: %v", r)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inb := udp(peer4, me4, uint16(1000+g), 53).bytes()
			outb := udp(me4, peer4, uint16(2000+g), 53).bytes()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				now := f.Now()
				f.RunInAt(inb, now)
				f.RunOutAt(outb, now)
				if i%64 == 0 {
					f.RunOutAt(udp(me4, peer4, uint16(i%200), 53).bytes(), now)
				}
			}
		}()
	}
	for i := range 200 {
		rules := allow
		if i%2 == 1 {
			rules = deny
		}
		if err := f.SetRules(rules, self); err != nil {
			t.Error(err)
		}
		runtime.Gosched()
	}
	close(stop)
	wg.Wait()
	if err := f.SetRules(deny, self); err != nil {
		t.Fatal(err)
	}
	if _, r := f.RunIn(udp(peer4, me4, 1000, 53).bytes()); r != DropRevoked && r != DropNoRule {
		t.Errorf("after final revocation: %v", r)
	}
	if _, r := f.RunIn(udp(peer4, me4, 53, 2000).bytes()); r != AcceptEstablished {
		t.Errorf("own flow after swaps: %v", r)
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	f := newTestFilter(t, newFakeClock(), allowPeer(peer4, peer6))
	est := tcp(peer4, me4, 1000, 22, tcpACK).bytes()
	f.RunIn(tcp(peer4, me4, 1000, 22, tcpSYN).bytes())
	noMatch := tcp("100.64.0.9", me4, 1000, 22, tcpSYN).bytes()
	outb := udp(me6, peer6, 1, 53).bytes()
	newFlow := udp(peer4, me4, 1, 53).bytes()
	related := icmpErr(peer6, me6, outb).bytes()
	malformed := est[:30]
	now := f.Now()
	var port, synPort uint16
	syn, synAck := tcp(peer4, me4, 0, 22, tcpSYN).bytes(), tcp(me4, peer4, 22, 0, tcpSYN|tcpACK).bytes()
	// The IPv4 and IPv6 fast paths, both ways.
	f.RunOut(tcp(me4, peer4, 40000, 443, tcpSYN).bytes())
	f.RunIn(tcp(peer4, me4, 443, 40000, tcpSYN|tcpACK).bytes())
	est4In, est4Out := tcp(peer4, me4, 443, 40000, tcpACK).bytes(), tcp(me4, peer4, 40000, 443, tcpACK).bytes()
	f.RunOut(udp(me6, peer6, 5000, 53).bytes())
	est6In := udp(peer6, me6, 53, 5000).bytes()
	f.RunIn(est6In)
	for name, fn := range map[string]func(){
		"established":      func() { f.RunInAt(est, now) },
		"fast path in":     func() { f.RunInAt(est4In, now) },
		"fast path out":    func() { f.RunOutAt(est4Out, now) },
		"ipv6 established": func() { f.RunInAt(est6In, now) },
		"no match":         func() { f.RunInAt(noMatch, now) },
		"outbound":         func() { f.RunOutAt(outb, now) },
		"related":          func() { f.RunInAt(related, now) },
		"malformed":        func() { f.RunInAt(malformed, now) },
		"new flow": func() {
			port++
			newFlow[20], newFlow[21] = byte(port>>8), byte(port)
			f.RunInAt(newFlow, now)
		},
		"new connection": func() {
			synPort++
			syn[20], syn[21] = byte(synPort>>8), byte(synPort)
			f.RunInAt(syn, now)
		},
		"answered connection": func() {
			synPort++
			syn[20], syn[21] = byte(synPort>>8), byte(synPort)
			synAck[22], synAck[23] = byte(synPort>>8), byte(synPort)
			f.RunInAt(syn, now)
			f.RunOutAt(synAck, now)
		},
		"with clock": func() { f.RunIn(est) },
	} {
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s: %v allocations per packet, want 0", name, n)
		}
	}
}

// TestLockFreeLookupNeverMixesFlows churns a one-shard, 16-flow table
// (every new flow evicts one, and entries are reused all the time) while
// other goroutines ask, without the lock, for flows that were never made
// but whose key words are those of two made flows mixed: remote address
// of one, ports of another. A lookup that trusted a torn read of a reused
// entry would admit them. Run with -race.
func TestLockFreeLookupNeverMixesFlows(t *testing.T) {
	f := New(Options{FlowCapacity: 16})
	if err := f.SetRules(nil, self); err != nil {
		t.Fatal(err)
	}
	const n = 64
	remote := func(i int) string { return fmt.Sprintf("100.64.1.%d", i) }
	// Made flows: remote i, this node's port 10000+i. Never made:
	// remote i, port 10000+j for j != i.
	var made [n][]byte
	for i := range n {
		made[i] = udp(me4, remote(i), uint16(10000+i), 53).bytes()
	}
	var probes [][]byte
	for i := range n {
		for j := range n {
			if i != j {
				probes = append(probes, udp(remote(i), me4, 53, uint16(10000+j)).bytes())
			}
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			f.RunOut(made[k%n])
		}
	}()
	deadline := time.Now().Add(500 * time.Millisecond)
	if testing.Short() {
		deadline = time.Now().Add(100 * time.Millisecond)
	}
	var bad atomic.Value
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; time.Now().Before(deadline); k++ {
				if _, r := f.RunIn(probes[k%len(probes)]); r != DropNoRule {
					bad.Store(fmt.Sprintf("probe %d: %v", k%len(probes), r))
					return
				}
			}
		}()
	}
	for time.Now().Before(deadline) && bad.Load() == nil {
		runtime.Gosched()
	}
	close(stop)
	wg.Wait()
	if b := bad.Load(); b != nil {
		t.Fatalf("a flow never made was admitted: %v", b)
	}
}

// TestGenerationWrapRechecksFlows makes the rule-set generation wrap its
// 32 bits (as 2^32 rule changes would) right onto the value an admitted
// flow was last checked at: the flow must still be checked against the
// new rules.
func TestGenerationWrapRechecksFlows(t *testing.T) {
	f := newTestFilter(t, newFakeClock(), allowPeer(peer4))
	runSteps(t, f, []step{
		in(tcp(peer4, me4, 1000, 22, tcpSYN), AcceptRule),
		out(tcp(me4, peer4, 22, 1000, tcpSYN|tcpACK), AcceptOutbound), // the flow entry
	})
	admitted := f.rules.Load().gen
	f.setMu.Lock()
	f.gen = 1<<32 - 1 // the next generation's low 32 bits are 0
	f.setMu.Unlock()
	for {
		if err := f.SetRules(nil, self); err != nil {
			t.Fatal(err)
		}
		if uint32(f.rules.Load().gen) == uint32(admitted) {
			break
		}
	}
	runSteps(t, f, []step{in(tcp(peer4, me4, 1000, 22, tcpACK), DropRevoked)})
}

// TestBusyFlowOutlivesItsTimeout checks that a flow whose packets come
// closer together than the last-seen tick (which the packet path then
// does not write) still counts as busy: it lives far past its idle timeout
// while packets keep coming, and ends once they stop.
func TestBusyFlowOutlivesItsTimeout(t *testing.T) {
	clk := newFakeClock()
	f := New(Options{Now: clk.Now, Timeouts: Timeouts{UDP: 3 * time.Millisecond}})
	if err := f.SetRules(nil, self); err != nil {
		t.Fatal(err)
	}
	runSteps(t, f, []step{out(udp(me4, peer4, 5000, 53), AcceptOutbound)})
	for i := range 100 {
		clk.Advance(600 * time.Microsecond)
		if _, r := f.RunIn(udp(peer4, me4, 53, 5000).bytes()); r != AcceptEstablished {
			t.Fatalf("packet %d, %v after the first: %v", i, time.Duration(i+1)*600*time.Microsecond, r)
		}
	}
	clk.Advance(3*time.Millisecond + time.Nanosecond)
	runSteps(t, f, []step{in(udp(peer4, me4, 53, 5000), DropNoRule)})
}
