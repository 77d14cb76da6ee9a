package agent_test

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/agent"
	"github.com/latchnet/latch/agent/internal/fakecoord"
	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/overlay"
	"github.com/latchnet/latch/wire"
)

// fakeClock is the agent's clock and its expiry timers: time moves only
// when the test says, and a timer fires when the clock reaches its
// deadline.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	c       chan time.Time
	stopped bool
	fired   bool
}

func newFakeClock() *fakeClock {
	// Near real time: the node certificate's validity is checked
	// against this clock too.
	return &fakeClock{now: time.Now().Truncate(time.Second)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Timer implements agent.TimerFunc.
func (c *fakeClock) Timer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.fired = true
		t.c <- c.now
	}
	c.timers = append(c.timers, t)
	return t.c, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped && !t.fired
		t.stopped = true
		return was
	}
}

// set moves the clock to now and fires every timer due.
func (c *fakeClock) set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
	for _, t := range c.timers {
		if !t.stopped && !t.fired && !now.Before(t.at) {
			t.fired = true
			t.c <- now
		}
	}
}

// armed returns the deadlines of the timers neither stopped nor fired.
func (c *fakeClock) armed() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Time
	for _, t := range c.timers {
		if !t.stopped && !t.fired {
			out = append(out, t.at)
		}
	}
	return out
}

// lastConfig is the configuration the data plane has now.
func lastConfig(t *testing.T, h *harness) overlay.Config {
	t.Helper()
	cfgs := h.engine().Configs()
	if len(cfgs) == 0 {
		t.Fatal("no configuration applied")
	}
	return cfgs[len(cfgs)-1]
}

func peerKeys(cfg overlay.Config) []wire.NodePublic {
	var out []wire.NodePublic
	for _, p := range cfg.Peers {
		out = append(out, p.Key)
	}
	return out
}

// filterSources returns every source prefix of the filter's rules.
func filterSources(cfg overlay.Config) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range cfg.Rules {
		out = append(out, r.Sources...)
	}
	return out
}

// holds reports whether cfg has node as a WireGuard peer, or any of its
// addresses among the filter's sources.
func holds(cfg overlay.Config, n wire.Node) (peer, source bool) {
	peer = slices.Contains(peerKeys(cfg), n.Key)
	srcs := filterSources(cfg)
	for _, a := range n.Addresses {
		if slices.Contains(srcs, a) {
			source = true
		}
	}
	return peer, source
}

func statusPeerNames(st localapi.Status) []string {
	var out []string
	for _, p := range st.Peers {
		out = append(out, p.Name)
	}
	return out
}

// expiryNet is an enrolled agent on a fake clock whose stream the test
// drives.
type expiryNet struct {
	s      *fakecoord.Server
	h      *harness
	clk    *fakeClock
	stream *fakecoord.Stream
	nm     *wire.Netmap
}

// startExpiryNet enrolls an agent on a fake clock and sends it a netmap
// with peers "short" and "long", whose keys expire at the clock's start
// plus the given durations (zero: never), and "forever".
func startExpiryNet(t *testing.T, short, long time.Duration) (*expiryNet, map[string]wire.Node) {
	t.Helper()
	s := fakecoord.New(t, fakecoord.Options{})
	clk := newFakeClock()
	t0 := clk.Now()
	peers := map[string]wire.Node{}
	for name, d := range map[string]time.Duration{"short": short, "long": long, "forever": 0} {
		n := s.AddPeer(name, "198.18.0.9:51820")
		if d != 0 {
			n.KeyExpiry = t0.Add(d)
		}
		peers[name] = n
	}
	h := start(t, t.TempDir(), func(c *agent.Config) {
		c.Now = clk.Now
		c.Timer = clk.Timer
		c.Posture = &fakePosture{}
	})
	up := h.upAsync(localapi.UpRequest{Coordinator: s.URL, AuthKey: s.AuthKey})
	st := nextStream(t, s)
	nm := s.Netmap(st.Node)
	for i, p := range nm.Peers {
		nm.Peers[i].Node = peers[p.Name]
	}
	sendNetmap(t, st, nm)
	if r := waitUp(t, up); r.err != nil {
		t.Fatalf("Up: %v", r.err)
	}
	return &expiryNet{s: s, h: h, clk: clk, stream: st, nm: nm}, peers
}

func TestPeerLeavesDataPlaneAtItsKeyExpiryWithoutCoordinator(t *testing.T) {
	n, peers := startExpiryNet(t, 20*time.Second, time.Hour)
	t0 := n.clk.Now()
	expiry := peers["short"].KeyExpiry

	cfg := lastConfig(t, n.h)
	for _, name := range []string{"short", "long", "forever"} {
		if p, src := holds(cfg, peers[name]); !p || !src {
			t.Fatalf("before expiry: %s peer=%v source=%v, want both", name, p, src)
		}
	}
	// The timer is armed for the very instant of the first expiry.
	waitFor(t, "the expiry timer at the short peer's expiry", func() bool {
		return slices.ContainsFunc(n.clk.armed(), func(at time.Time) bool { return at.Equal(expiry) })
	})

	// The coordinator goes away: expiry needs no one.
	n.s.Close()
	waitFor(t, "the agent to notice the coordinator is gone", func() bool {
		return n.h.status().State == localapi.StateConnecting
	})

	// A nanosecond before: nothing changes.
	configs := len(n.h.engine().Configs())
	n.clk.set(expiry.Add(-time.Nanosecond))
	if got := len(n.h.engine().Configs()); got != configs {
		t.Fatalf("%d reconfigs before the expiry instant", got-configs)
	}
	if p, _ := holds(lastConfig(t, n.h), peers["short"]); !p {
		t.Fatal("the short peer left before its expiry")
	}

	// At the instant: the short peer leaves WireGuard and the filter.
	n.clk.set(expiry)
	waitFor(t, "the expired peer to leave the data plane", func() bool {
		p, src := holds(lastConfig(t, n.h), peers["short"])
		return !p && !src
	})
	cfg = lastConfig(t, n.h)
	for _, name := range []string{"long", "forever"} {
		if p, src := holds(cfg, peers[name]); !p || !src {
			t.Errorf("after the short peer's expiry: %s peer=%v source=%v, want both", name, p, src)
		}
	}
	if got := statusPeerNames(n.h.status()); !slices.Equal(got, []string{"forever", "long"}) {
		t.Errorf("status peers = %v, want [forever long]", got)
	}
	// And the timer re-arms, capped so a stepped wall clock is caught.
	waitFor(t, "the timer to re-arm for the long peer", func() bool {
		return slices.ContainsFunc(n.clk.armed(), func(at time.Time) bool { return at.Equal(expiry.Add(30 * time.Second)) })
	})
	n.clk.set(t0.Add(time.Hour))
	waitFor(t, "the long peer to leave at its expiry", func() bool {
		p, src := holds(lastConfig(t, n.h), peers["long"])
		return !p && !src
	})
	if p, src := holds(lastConfig(t, n.h), peers["forever"]); !p || !src {
		t.Errorf("a peer that never expires left: peer=%v source=%v", p, src)
	}
	if !strings.Contains(n.h.logs.String(), "dropped peer whose node key expired") {
		t.Error("no log line about the expired peer")
	}
}

func TestNetmapChangeRearmsExpiryTimer(t *testing.T) {
	n, peers := startExpiryNet(t, 25*time.Second, 0)
	t0 := n.clk.Now()
	waitFor(t, "the timer at the short peer's expiry", func() bool {
		return slices.ContainsFunc(n.clk.armed(), func(at time.Time) bool { return at.Equal(peers["short"].KeyExpiry) })
	})
	// A delta gives "forever" an expiry sooner than "short"'s.
	sooner := peers["forever"]
	sooner.KeyExpiry = t0.Add(5 * time.Second)
	sendDelta(t, n.stream, &wire.Delta{PrevVersion: n.nm.Version, Version: n.nm.Version + 1,
		Upsert: []wire.Peer{{Node: sooner, Rules: []string{"interim-allow-peers"}}}})
	waitFor(t, "the timer re-armed for the sooner expiry", func() bool {
		armed := n.clk.armed()
		return len(armed) == 1 && armed[0].Equal(sooner.KeyExpiry)
	})
	n.clk.set(sooner.KeyExpiry)
	waitFor(t, "the peer to leave at its new expiry", func() bool {
		p, src := holds(lastConfig(t, n.h), sooner)
		return !p && !src
	})
	if p, _ := holds(lastConfig(t, n.h), peers["short"]); !p {
		t.Error("the short peer left before its expiry")
	}
}

func TestPeerAlreadyExpiredNeverReachesDataPlane(t *testing.T) {
	n, peers := startExpiryNet(t, -time.Second, 0)
	for i, cfg := range n.h.engine().Configs() {
		if p, src := holds(cfg, peers["short"]); p || src {
			t.Fatalf("config %d holds a peer whose key had expired on arrival: peer=%v source=%v", i, p, src)
		}
	}
	if p, _ := holds(lastConfig(t, n.h), peers["forever"]); !p {
		t.Error("the live peer is missing")
	}
}

func TestOwnKeyExpiryDropsEveryPeerUntilExtended(t *testing.T) {
	n, peers := startExpiryNet(t, 0, 0)
	t0 := n.clk.Now()
	self := n.nm.Self
	self.KeyExpiry = t0.Add(10 * time.Second)
	sendDelta(t, n.stream, &wire.Delta{PrevVersion: n.nm.Version, Version: n.nm.Version + 1, Self: &self})
	waitFor(t, "the timer at the node's own expiry", func() bool {
		return slices.ContainsFunc(n.clk.armed(), func(at time.Time) bool { return at.Equal(self.KeyExpiry) })
	})
	if st := n.h.status(); st.KeyExpired || !st.KeyExpiry.Equal(self.KeyExpiry) {
		t.Errorf("status before expiry: expired=%v expiry=%v, want not expired, %v", st.KeyExpired, st.KeyExpiry, self.KeyExpiry)
	}

	n.clk.set(self.KeyExpiry)
	waitFor(t, "every peer to leave", func() bool {
		cfg := lastConfig(t, n.h)
		return len(cfg.Peers) == 0 && len(filterSources(cfg)) == 0
	})
	st := n.h.status()
	if !st.KeyExpired || len(st.Peers) != 0 {
		t.Errorf("status after the node's expiry: expired=%v peers=%v, want expired and none", st.KeyExpired, statusPeerNames(st))
	}
	if msg := localapi.KeyExpiredMessage(st.KeyExpiry); !strings.Contains(msg, self.KeyExpiry.UTC().Format(time.RFC3339)) ||
		!strings.Contains(msg, "ask an admin to extend it or re-enroll") {
		t.Errorf("message = %q", msg)
	}

	// An admin extends the key: the next netmap brings the peers back.
	self.KeyExpiry = t0.Add(time.Hour)
	sendDelta(t, n.stream, &wire.Delta{PrevVersion: n.nm.Version + 1, Version: n.nm.Version + 2, Self: &self})
	waitFor(t, "the peers to come back", func() bool {
		p, src := holds(lastConfig(t, n.h), peers["forever"])
		return p && src
	})
	if st := n.h.status(); st.KeyExpired || len(st.Peers) != 3 {
		t.Errorf("status after extension: expired=%v peers=%v", st.KeyExpired, statusPeerNames(st))
	}
}
