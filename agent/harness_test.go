package agent_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/agent"
	"github.com/latchnet/latch/agent/control"
	"github.com/latchnet/latch/agent/enginetest"
	"github.com/latchnet/latch/agent/internal/fakecoord"
	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/agent/state"
	"github.com/latchnet/latch/wire"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness runs one agent on a state dir with a fake engine.
type harness struct {
	t       *testing.T
	dir     string
	engines *enginetest.Factory
	logs    *syncBuffer
	ag      *agent.Agent
	stop    func()

	mu    sync.Mutex
	addrs []agent.InterfaceAddr
	pings []netip.Addr
	// pingErr fails every ping when set.
	pingErr error
}

const testIface = "lttest0"

var underlay = netip.MustParseAddr("198.18.0.5")

// start runs an agent on dir; mod adjusts its config. It stops at the end
// of the test, and the test fails if any agent goroutine outlives all of
// the test's agents.
func start(t *testing.T, dir string, mod func(*agent.Config)) *harness {
	t.Helper()
	leakChecks.Lock()
	if !leakChecks.tests[t] {
		leakChecks.tests[t] = true
		// Registered before any agent's stop, so it runs after all of
		// them (cleanups run last-in first-out).
		t.Cleanup(func() { checkNoAgentGoroutines(t) })
	}
	leakChecks.Unlock()
	h := &harness{t: t, dir: dir, engines: &enginetest.Factory{}, logs: &syncBuffer{}}
	h.addrs = []agent.InterfaceAddr{
		{Interface: "lo", Up: true, Loopback: true, Addr: netip.MustParseAddr("127.0.0.1")},
		{Interface: "eth0", Up: true, Addr: underlay},
	}
	cfg := agent.Config{
		StateDir:   dir,
		Interface:  testIface,
		ListenPort: 51820,
		Logger:     slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		NewEngine:  h.engines.New,
		OverlayMTU: func(dst netip.Addr) (int, error) {
			if dst != netip.MustParseAddr("127.0.0.1") {
				return 0, errors.New("unexpected underlay destination " + dst.String())
			}
			return 1340, nil
		},
		Backoff:          control.Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		EndpointInterval: 20 * time.Millisecond,
		InterfaceAddrs:   h.interfaceAddrs,
		Ping:             h.ping,
		Hostname:         func() (string, error) { return "host-a", nil },
	}
	if mod != nil {
		mod(&cfg)
	}
	ag, err := agent.New(cfg)
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	h.ag = ag
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	h.stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancellation")
		}
	})
	t.Cleanup(h.stop)
	return h
}

func (h *harness) interfaceAddrs() ([]agent.InterfaceAddr, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]agent.InterfaceAddr(nil), h.addrs...), nil
}

func (h *harness) setAddrs(a ...agent.InterfaceAddr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addrs = a
}

func (h *harness) ping(ctx context.Context, dst netip.Addr, seq int, timeout time.Duration) (time.Duration, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pings = append(h.pings, dst)
	if h.pingErr != nil {
		return 0, h.pingErr
	}
	return time.Duration(seq) * time.Millisecond, nil
}

func (h *harness) status() localapi.Status {
	h.t.Helper()
	st, err := h.ag.Status(context.Background())
	if err != nil {
		h.t.Fatalf("Status: %v", err)
	}
	return st
}

// upAsync calls Up in the background.
func (h *harness) upAsync(req localapi.UpRequest) chan upResult {
	ch := make(chan upResult, 1)
	go func() {
		resp, err := h.ag.Up(context.Background(), req)
		ch <- upResult{resp, err}
	}()
	return ch
}

type upResult struct {
	resp localapi.UpResponse
	err  error
}

func waitUp(t *testing.T, ch chan upResult) upResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("Up did not return within 15s")
		return upResult{}
	}
}

// enroll brings a fresh agent up against a coordinator that sends netmaps
// on its own, and returns the node's stored state.
func (h *harness) enroll(s *fakecoord.Server) localapi.UpResponse {
	h.t.Helper()
	resp, err := h.ag.Up(context.Background(), localapi.UpRequest{Coordinator: s.URL, AuthKey: s.AuthKey, Timeout: 10 * time.Second})
	if err != nil {
		h.t.Fatalf("Up: %v", err)
	}
	return resp
}

func (h *harness) state() *state.State {
	h.t.Helper()
	d, err := state.Open(h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	st, err := d.Load()
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

// engine returns the one engine created so far.
func (h *harness) engine() *enginetest.Fake {
	h.t.Helper()
	e := h.engines.Last()
	if e == nil {
		h.t.Fatal("no engine created")
	}
	return e
}

// waitFor polls cond until it holds, failing after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func nextStream(t *testing.T, s *fakecoord.Server) *fakecoord.Stream {
	t.Helper()
	select {
	case st := <-s.Streams:
		return st
	case <-time.After(10 * time.Second):
		t.Fatal("no stream opened within 10s")
		return nil
	}
}

func sendNetmap(t *testing.T, st *fakecoord.Stream, nm *wire.Netmap) {
	t.Helper()
	if !st.Send(wire.StreamMessage{Type: wire.MsgNetmap, Netmap: nm}) {
		t.Fatal("stream ended before the netmap was sent")
	}
}

func sendDelta(t *testing.T, st *fakecoord.Stream, d *wire.Delta) {
	t.Helper()
	if !st.Send(wire.StreamMessage{Type: wire.MsgDelta, Delta: d}) {
		t.Fatal("stream ended before the delta was sent")
	}
}

// leakChecks remembers the tests that check for leaked goroutines.
var leakChecks = struct {
	sync.Mutex
	tests map[*testing.T]bool
}{tests: map[*testing.T]bool{}}

// checkNoAgentGoroutines fails if a goroutine of the agent or its control
// client is still running.
func checkNoAgentGoroutines(t *testing.T) {
	t.Helper()
	markers := []string{
		"github.com/latchnet/latch/agent.(*session)",
		"github.com/latchnet/latch/agent.(*Agent)",
		"github.com/latchnet/latch/agent/control.(*Client)",
	}
	var leaked string
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		leaked = ""
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "checkNoAgentGoroutines") {
				continue
			}
			for _, m := range markers {
				if strings.Contains(g, m) {
					leaked = g
				}
			}
		}
		if leaked == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent goroutine leaked:\n%s", leaked)
		}
		<-tick.C
	}
}
