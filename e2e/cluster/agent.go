package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/latchnet/latch/e2e/netns"
)

// Agent is a latchd process on a host, with its own state directory,
// socket and a WireGuard interface name unique on the machine.
type Agent struct {
	Host  *netns.Host
	Coord *Coordinator
	Bins  Binaries
	// Iface is --interface, "lt" + 6 hex digits.
	Iface    string
	StateDir string
	Socket   string
	Args     []string

	owner netns.TB // see Coordinator.owner

	mu   sync.Mutex // guards proc
	proc *netns.Proc
}

// StartAgent starts latchd on h and waits until its local socket answers
// `latch status`. The agent is not enrolled; call Up.
func StartAgent(t netns.TB, bins Binaries, h *netns.Host, coord *Coordinator, extra ...string) *Agent {
	t.Helper()
	if err := bins.Require(AgentBin, CLIBin); err != nil {
		t.Fatalf("starting agent: %v", err)
	}
	a := &Agent{
		Host:     h,
		Coord:    coord,
		Bins:     bins,
		Iface:    h.NewIfName(),
		StateDir: filepath.Join(h.Dir, "latchd"),
		Socket:   filepath.Join(h.Dir, "latchd.sock"),
		owner:    t,
	}
	a.Args = append([]string{bins.Path(AgentBin),
		"--state-dir", a.StateDir,
		"--socket", a.Socket,
		"--interface", a.Iface,
		"--log-level", "debug",
	}, extra...)
	a.Start(t)
	return a
}

// Start starts latchd (again) and waits for its socket to answer. t only
// reports failure: the process lives until the cleanup of the TB that
// StartAgent was given.
func (a *Agent) Start(t netns.TB) {
	t.Helper()
	p, err := a.Host.Spawn(nil, a.Args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	netns.Manage(a.owner, p)
	a.mu.Lock()
	a.proc = p
	a.mu.Unlock()
	err = netns.Poll(StartTimeout, func() error {
		if p.Exited() {
			return fmt.Errorf("latchd exited: %s", lastLine(p.Log()))
		}
		if _, err := os.Stat(a.Socket); err != nil {
			return fmt.Errorf("no socket yet: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := a.Status(ctx)
		return err
	})
	if err != nil {
		t.Fatalf("latchd on %s did not come up: %v", a.Host.Name, err)
	}
}

// Proc is the current latchd process.
func (a *Agent) Proc() *netns.Proc {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proc
}

// Env is the environment of the latch CLI on this agent's host: the
// agent's socket and the coordinator's admin settings.
func (a *Agent) Env() []string {
	env := []string{"LATCH_SOCKET=" + a.Socket}
	if a.Coord != nil {
		env = append(env, a.Coord.Env()...)
	}
	return env
}

// CLI runs `latch args...` on the agent's host.
func (a *Agent) CLI(ctx context.Context, args ...string) (netns.Result, error) {
	return a.Host.RunEnv(ctx, a.Env(), append([]string{a.Bins.Path(CLIBin)}, args...)...)
}

// UpArgs is the command line of `latch up` with key on this agent.
func (a *Agent) UpArgs(key string, extra ...string) []string {
	return append([]string{a.Bins.Path(CLIBin), "up",
		"--coordinator", a.Coord.URL,
		"--auth-key", key,
		"--hostname", a.Host.Name,
	}, extra...)
}

// TryUp runs `latch up` with key and returns how it went.
func (a *Agent) TryUp(ctx context.Context, key string, extra ...string) (netns.Result, error) {
	return a.Host.RunEnv(ctx, a.Env(), a.UpArgs(key, extra...)...)
}

// Up enrolls the agent with key and fails t unless `latch up` succeeds.
// It returns what latch up printed.
func (a *Agent) Up(t netns.TB, key string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	res, err := a.TryUp(ctx, key, extra...)
	if err != nil {
		// err carries latch's own one-line reason, never the key.
		t.Fatalf("latch up on %s: exit %d: %s", a.Host.Name, res.Code, strings.TrimSpace(res.Stderr))
	}
	return res.Stdout
}

// Status is what `latch status --json` prints (the agent's local API
// status), reduced to what the tests read.
type Status struct {
	State         string       `json:"state"`
	Interface     string       `json:"interface"`
	LastError     string       `json:"last_error"`
	NetmapVersion uint64       `json:"netmap_version"`
	Self          *StatusNode  `json:"self"`
	Peers         []StatusNode `json:"peers"`
}

// StatusNode is a node in Status.
type StatusNode struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Key       string         `json:"key"`
	Addresses []netip.Prefix `json:"addresses"`
	Tags      []string       `json:"tags"`
}

// PeerNames returns the names of the peers, sorted.
func (s Status) PeerNames() []string {
	var names []string
	for _, p := range s.Peers {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

// Status runs `latch status --json`.
func (a *Agent) Status(ctx context.Context) (Status, error) {
	var st Status
	res, err := a.CLI(ctx, "status", "--json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil {
		return st, fmt.Errorf("decoding latch status --json on %s: %w", a.Host.Name, err)
	}
	return st, nil
}

// OverlayAddrs reads the addresses of the agent's WireGuard interface
// from the kernel (`ip -j addr show dev <iface>`).
func (a *Agent) OverlayAddrs(ctx context.Context) ([]netip.Prefix, error) {
	res, err := a.Host.Run(ctx, "ip", "-j", "addr", "show", "dev", a.Iface)
	if err != nil {
		return nil, err
	}
	var links []struct {
		AddrInfo []struct {
			Family    string `json:"family"`
			Local     string `json:"local"`
			Prefixlen int    `json:"prefixlen"`
			Scope     string `json:"scope"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &links); err != nil {
		return nil, fmt.Errorf("decoding ip -j addr: %w", err)
	}
	var out []netip.Prefix
	for _, l := range links {
		for _, ai := range l.AddrInfo {
			addr, err := netip.ParseAddr(ai.Local)
			if err != nil || addr.IsLinkLocalUnicast() {
				continue
			}
			out = append(out, netip.PrefixFrom(addr, ai.Prefixlen))
		}
	}
	return out, nil
}

// OverlayIPv4 returns the agent's overlay IPv4 address, failing t if the
// interface has none.
func (a *Agent) OverlayIPv4(t netns.TB) netip.Addr {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	addrs, err := a.OverlayAddrs(ctx)
	if err != nil {
		t.Fatalf("overlay address of %s: %v", a.Host.Name, err)
	}
	for _, p := range addrs {
		if p.Addr().Is4() {
			return p.Addr()
		}
	}
	t.Fatalf("%s has no IPv4 address on %s: %v", a.Host.Name, a.Iface, addrs)
	return netip.Addr{}
}

// WGPeers returns the public keys `wg show <iface> peers` lists.
func (a *Agent) WGPeers(ctx context.Context) ([]string, error) {
	res, err := a.Host.Run(ctx, "wg", "show", a.Iface, "peers")
	if err != nil {
		return nil, err
	}
	return strings.Fields(res.Stdout), nil
}

// Stop stops latchd (SIGTERM, then SIGKILL after a deadline).
func (a *Agent) Stop() error { return a.Proc().Stop() }

// WaitConnected waits until `latch status` says connected with want peers.
func (a *Agent) WaitConnected(t netns.TB, want int, deadline time.Duration) Status {
	t.Helper()
	var st Status
	netns.Eventually(t, deadline, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if st, err = a.Status(ctx); err != nil {
			return err
		}
		if st.State != "connected" || len(st.Peers) != want {
			return fmt.Errorf("%s: state %q with %d peers, want connected with %d (last error %q)", a.Host.Name, st.State, len(st.Peers), want, st.LastError)
		}
		return nil
	})
	return st
}

// WaitPeers waits until `latch status` says connected and lists exactly
// the peers named in want (in any order).
func (a *Agent) WaitPeers(t netns.TB, deadline time.Duration, want ...string) Status {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	var st Status
	netns.Eventually(t, deadline, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if st, err = a.Status(ctx); err != nil {
			return err
		}
		if got := st.PeerNames(); st.State != "connected" || !slices.Equal(got, want) {
			return fmt.Errorf("%s: state %q with peers %v, want connected with %v (last error %q)", a.Host.Name, st.State, got, want, st.LastError)
		}
		return nil
	})
	return st
}
