package filter

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// TestUnansweredSYNMakesNoFlowEntry follows an inbound connection through
// its handshake: the admitted SYN records nothing, this node's SYN-ACK
// gives the connection its flow entry, and that entry is one the remote
// side started, so a rule change still stops it.
func TestUnansweredSYNMakesNoFlowEntry(t *testing.T) {
	f := newTestFilter(t, newFakeClock(), allowPeer(peer4, peer6))
	for _, c := range []struct{ name, peer, me string }{{"ipv4", peer4, me4}, {"ipv6", peer6, me6}} {
		t.Run(c.name, func(t *testing.T) {
			flows := f.Flows()
			runSteps(t, f, []step{
				in(tcp(c.peer, c.me, 1000, 22, tcpSYN), AcceptRule),
				in(tcp(c.peer, c.me, 1000, 22, tcpSYN), AcceptRule), // retransmitted
			})
			if n := f.Flows(); n != flows {
				t.Fatalf("flows after an unanswered SYN: %d, want %d", n, flows)
			}
			runSteps(t, f, []step{
				out(tcp(c.me, c.peer, 22, 1000, tcpSYN|tcpACK), AcceptOutbound),
				in(tcp(c.peer, c.me, 1000, 22, tcpACK), AcceptEstablished),
				out(tcp(c.me, c.peer, 22, 1000, tcpACK), AcceptOutbound),
			})
			if n := f.Flows(); n != flows+1 {
				t.Fatalf("flows after the SYN-ACK: %d, want %d", n, flows+1)
			}
		})
	}
	if err := f.SetRules(nil, self); err != nil {
		t.Fatal(err)
	}
	runSteps(t, f, []step{
		in(tcp(peer4, me4, 1000, 22, tcpACK), DropRevoked),
		out(tcp(me4, peer4, 22, 1000, tcpACK), AcceptOutboundUntracked),
		in(tcp(peer6, me6, 1000, 22, tcpACK), DropRevoked),
	})
}

// TestHalfOpenConnectionFollowsCurrentRules changes the rules between a
// connection's admitted SYN and its next packet: that packet, whichever
// way it goes, is judged by the rules in force, and nothing the rules no
// longer admit makes a flow entry.
func TestHalfOpenConnectionFollowsCurrentRules(t *testing.T) {
	clk := newFakeClock()
	grant := allowPeer(peer4)
	grant.Expires = clk.Now().Add(time.Minute)
	other := allowPeer(peer4)
	other.Ports = []wire.PortRange{{First: 80, Last: 80}}
	syn := tcp(peer4, me4, 1000, 22, tcpSYN)
	for _, tt := range []struct {
		name   string
		rules  []wire.FilterRule
		change func(f *Filter) // between the SYN and the rest
		steps  []step
	}{
		{
			name: "revoked, then the remote side goes on", rules: []wire.FilterRule{allowPeer(peer4)},
			change: func(f *Filter) { f.SetRules(nil, self) },
			steps: []step{
				in(tcp(peer4, me4, 1000, 22, tcpACK), DropNoRule),
				in(tcp(peer4, me4, 1000, 22, tcpACK), DropNoRule),
				in(syn, DropNoRule),
			},
		},
		{
			name: "revoked, then this node answers", rules: []wire.FilterRule{allowPeer(peer4)},
			change: func(f *Filter) { f.SetRules(nil, self) },
			steps: []step{
				out(tcp(me4, peer4, 22, 1000, tcpSYN|tcpACK), AcceptOutboundUntracked),
				in(tcp(peer4, me4, 1000, 22, tcpACK), DropNoRule),
			},
		},
		{
			name: "narrowed to another port", rules: []wire.FilterRule{allowPeer(peer4)},
			change: func(f *Filter) { f.SetRules([]wire.FilterRule{other}, self) },
			steps: []step{
				out(tcp(me4, peer4, 22, 1000, tcpSYN|tcpACK), AcceptOutboundUntracked),
				in(tcp(peer4, me4, 1000, 22, tcpACK), DropNoRule),
			},
		},
		{
			name: "rule expired on the local clock", rules: []wire.FilterRule{grant},
			change: func(*Filter) { clk.Advance(time.Minute) },
			steps: []step{
				out(tcp(me4, peer4, 22, 1000, tcpSYN|tcpACK), AcceptOutboundUntracked),
				in(tcp(peer4, me4, 1000, 22, tcpACK), DropExpired),
				in(syn, DropExpired),
			},
		},
		{
			name: "rules replaced by equal ones", rules: []wire.FilterRule{allowPeer(peer4)},
			change: func(f *Filter) { f.SetRules([]wire.FilterRule{allowPeer(peer4)}, self) },
			steps: []step{
				in(tcp(peer4, me4, 1000, 22, tcpACK), AcceptRule),
				in(tcp(peer4, me4, 1000, 22, tcpACK), AcceptEstablished),
				out(tcp(me4, peer4, 22, 1000, tcpACK), AcceptOutbound),
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFilter(t, clk, tt.rules...)
			runSteps(t, f, []step{in(syn, AcceptRule)})
			tt.change(f)
			runSteps(t, f, tt.steps)
			if tt.steps[len(tt.steps)-1].want.Verdict() == Drop && f.Flows() != 0 {
				t.Errorf("a refused connection made %d flow entries", f.Flows())
			}
		})
	}
}

// TestSYNACKMakesNoEntryTheRulesRefuse: this node's SYN-ACK makes a flow
// entry only for a connection the rules admit from the remote side, so a
// reply cannot open a door the rules keep shut - whether or not a SYN was
// ever seen.
func TestSYNACKMakesNoEntryTheRulesRefuse(t *testing.T) {
	ssh := allowPeer(peer4, peer6)
	ssh.Ports = []wire.PortRange{{First: 22, Last: 22}}
	for _, c := range []struct {
		name, peer, me string
		port           uint16
	}{
		{"ipv4, port no rule admits", peer4, me4, 23},
		{"ipv6, port no rule admits", peer6, me6, 23},
		{"ipv4, source no rule admits", "100.64.9.9", me4, 22},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newTestFilter(t, newFakeClock(), ssh)
			runSteps(t, f, []step{
				out(tcp(c.me, c.peer, c.port, 1000, tcpSYN|tcpACK), AcceptOutboundUntracked),
				in(tcp(c.peer, c.me, 1000, c.port, tcpACK), DropNoRule),
			})
			if n := f.Flows(); n != 0 {
				t.Fatalf("flows after a refused connection's SYN-ACK: %d, want 0", n)
			}
		})
	}
	// The same SYN-ACK on the admitted port makes the entry, with no SYN
	// seen (say the table forgot it): the rules admit that connection.
	f := newTestFilter(t, newFakeClock(), ssh)
	runSteps(t, f, []step{
		out(tcp(me4, peer4, 22, 1000, tcpSYN|tcpACK), AcceptOutbound),
		in(tcp(peer4, me4, 1000, 22, tcpACK), AcceptEstablished),
	})
}

// TestInboundSYNReplacesThisNodesClosedFlow: a connection this node
// started and closed leaves an entry that passes packets without any rule.
// A new connection the remote side opens on the same ports must not ride
// on it: after a rule change it stops like any connection the remote side
// started.
func TestInboundSYNReplacesThisNodesClosedFlow(t *testing.T) {
	for _, answered := range []bool{false, true} {
		t.Run(fmt.Sprint("answered=", answered), func(t *testing.T) {
			f := newTestFilter(t, newFakeClock(), allowPeer(peer4))
			runSteps(t, f, []step{
				out(tcp(me4, peer4, 40000, 443, tcpSYN), AcceptOutbound),
				in(tcp(peer4, me4, 443, 40000, tcpSYN|tcpACK), AcceptEstablished),
				out(tcp(me4, peer4, 40000, 443, tcpFIN|tcpACK), AcceptOutbound),
				in(tcp(peer4, me4, 443, 40000, tcpFIN|tcpACK), AcceptEstablished),
				// The same ports, opened from the other side.
				in(tcp(peer4, me4, 443, 40000, tcpSYN), AcceptRule),
			})
			if answered {
				runSteps(t, f, []step{
					out(tcp(me4, peer4, 40000, 443, tcpSYN|tcpACK), AcceptOutbound),
					in(tcp(peer4, me4, 443, 40000, tcpACK), AcceptEstablished),
				})
			}
			if err := f.SetRules(nil, self); err != nil {
				t.Fatal(err)
			}
			want := DropNoRule // the SYN left no entry
			if answered {
				want = DropRevoked
			}
			runSteps(t, f, []step{in(tcp(peer4, me4, 443, 40000, tcpACK), want)})
		})
	}
}

// TestSYNsDoNotEvictFlows floods a 16-flow table with admitted SYNs that
// nobody answers: the flow this node started stays.
func TestSYNsDoNotEvictFlows(t *testing.T) {
	clk := newFakeClock()
	f := New(Options{Now: clk.Now, FlowCapacity: 16})
	if err := f.SetRules([]wire.FilterRule{allowPeer(peer4)}, self); err != nil {
		t.Fatal(err)
	}
	runSteps(t, f, []step{out(udp(me4, peer4, 5000, 53), AcceptOutbound)})
	for i := range 1000 {
		clk.Advance(time.Millisecond)
		if _, r := f.RunIn(tcp(peer4, me4, uint16(10000+i), 22, tcpSYN).bytes()); r != AcceptRule {
			t.Fatalf("SYN %d: %v", i, r)
		}
	}
	if n := f.Flows(); n != 1 {
		t.Errorf("flows: %d, want 1", n)
	}
	runSteps(t, f, []step{in(udp(peer4, me4, 53, 5000), AcceptEstablished)})
}

// TestConcurrentHandshakesAndRuleSwaps runs handshakes from several
// goroutines while the rules flip between allowing and refusing the peer.
// Run with -race. Whatever interleaving happened, once the rules refuse,
// every connection is refused.
func TestConcurrentHandshakesAndRuleSwaps(t *testing.T) {
	f := New(Options{FlowCapacity: 256})
	allow := []wire.FilterRule{allowPeer(peer4)}
	if err := f.SetRules(allow, self); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				port := uint16(1000 + g*100 + i%100)
				now := f.Now()
				f.RunInAt(tcp(peer4, me4, port, 22, tcpSYN).bytes(), now)
				f.RunOutAt(tcp(me4, peer4, 22, port, tcpSYN|tcpACK).bytes(), now)
				f.RunInAt(tcp(peer4, me4, port, 22, tcpACK).bytes(), now)
			}
		}()
	}
	for i := range 200 {
		rules := allow
		if i%2 == 1 {
			rules = nil
		}
		if err := f.SetRules(rules, self); err != nil {
			t.Error(err)
		}
		runtime.Gosched()
	}
	close(stop)
	wg.Wait()
	if err := f.SetRules(nil, self); err != nil {
		t.Fatal(err)
	}
	for port := uint16(1000); port < 1400; port++ {
		if v, r := f.RunIn(tcp(peer4, me4, port, 22, tcpACK).bytes()); v != Drop {
			t.Fatalf("port %d after the final revocation: %v", port, r)
		}
	}
}
