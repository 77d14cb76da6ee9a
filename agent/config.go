// Package agent is the Latch node agent's state machine: it enrolls the
// node, keeps its identity and last netmap on disk, holds the stream to
// the coordinator, and turns every netmap into one idempotent Reconfig of
// the data plane. The data plane is reached only through the Engine
// interface, so everything here runs against an in-memory fake in tests
// (package enginetest).
//
// Lifetime: New loads the state directory; Run brings a saved identity up
// at once from its cached netmap (the data plane runs even while the
// coordinator is down) and connects. Every netmap, streamed or cached,
// must verify with the coordinator's netmap key pinned at enrollment; a
// cache that does not is refused and the node runs with no peers (and
// says why in its log and status) until a signed map arrives. Up, Down,
// Status and Ping serve the local API, and Rotate replaces the node's
// WireGuard key (also on a schedule, Config.KeyRotation); Close (or the
// end of Run's context) stops every goroutine and removes the interface.
// Nodes whose key expired leave the data plane at that instant on the
// agent's own clock (expiry.go), and the host's posture is reported at
// enrollment and whenever it changes (posture.go). Private keys never
// leave the node and are never logged.
package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/latchnet/latch/agent/control"
	"github.com/latchnet/latch/overlay"
	"github.com/latchnet/latch/wire"
)

// Defaults for Config.
const (
	DefaultInterface  = "latch0"
	DefaultListenPort = 51820
	// DefaultMTU is used when the underlay MTU towards the coordinator
	// cannot be found: the IPv6 minimum, which every path carries.
	DefaultMTU = 1280
	// PeerKeepalive keeps NAT mappings towards peers open.
	PeerKeepalive = 25 * time.Second
	// DefaultUpTimeout bounds Up's wait for the first netmap.
	DefaultUpTimeout = 30 * time.Second
	// DefaultEndpointInterval is how often local endpoints are checked.
	DefaultEndpointInterval = 30 * time.Second
	// DefaultKeyRotation is how often the node replaces its WireGuard key.
	DefaultKeyRotation = 24 * time.Hour
)

// Engine is the data plane as the agent sees it. Implementations are safe
// for concurrent use.
type Engine interface {
	// Reconfig makes the device match cfg whole: key, port, addresses,
	// routes, peers and filter rules. Applying the same cfg twice changes
	// nothing. On error the device keeps running with what it had.
	Reconfig(cfg overlay.Config) error
	// Status reports the device's peers with their counters.
	Status() (EngineStatus, error)
	// Close removes the interface and its UAPI socket. After Close the
	// engine is unusable.
	Close() error
}

// EngineOptions are fixed for an engine's life.
type EngineOptions struct {
	// Interface is the TUN interface name (at most 15 bytes).
	Interface string
	// MTU is the overlay MTU: underlay MTU minus WireGuard overhead.
	MTU    int
	Logger *slog.Logger
	// Flows, when not nil, receives the data plane's flow counts (the
	// agent's flow log aggregator; see flows.go).
	Flows overlay.FlowSink
}

// EngineStatus is what the data plane reports.
type EngineStatus struct {
	ListenPort int
	Peers      []EnginePeer
}

// EnginePeer is one peer's counters.
type EnginePeer struct {
	Key           wire.NodePublic
	Endpoint      netip.AddrPort
	LastHandshake time.Time
	RxBytes       int64
	TxBytes       int64
}

// InterfaceAddr is one address of one of the node's interfaces.
type InterfaceAddr struct {
	Interface string
	Up        bool
	Loopback  bool
	Addr      netip.Addr
}

// PingFunc sends one ICMP echo request to dst over whatever route the
// kernel picks (the overlay, for overlay addresses) and returns the round
// trip time, or an error after timeout.
type PingFunc func(ctx context.Context, dst netip.Addr, seq int, timeout time.Duration) (time.Duration, error)

// Config configures an Agent. Zero values mean the defaults.
type Config struct {
	// StateDir holds identity, keys, certificates and the last netmap.
	StateDir string
	// MemoryState keeps all of that in memory only, never on disk
	// (StateDir is ignored); such a node always enrolls as ephemeral and
	// leaves the network on exit. See leave.go.
	MemoryState bool
	// LeaveTimeout bounds the leave call an ephemeral node makes on
	// `latch down` and on exit; zero means DefaultLeaveTimeout.
	LeaveTimeout time.Duration
	// Interface is the overlay interface name.
	Interface string
	// ListenPort is the WireGuard UDP port.
	ListenPort int
	Logger     *slog.Logger

	// NewEngine creates the data plane. Required.
	NewEngine func(EngineOptions) (Engine, error)
	// OverlayMTU returns the overlay MTU for an underlay path towards
	// dst. Nil, or an error, means DefaultMTU.
	OverlayMTU func(dst netip.Addr) (int, error)

	// The rest are for tests and tuning.

	// Backoff paces reconnects; zero means 1s..60s with full jitter.
	Backoff control.Backoff
	// KeepAlive is assumed until the coordinator names one.
	KeepAlive time.Duration
	// UpTimeout bounds Up's wait when the request names none.
	UpTimeout time.Duration
	// KeyRotation is how often the WireGuard key is replaced (with
	// jitter of +-10%); zero means DefaultKeyRotation, negative never.
	KeyRotation time.Duration
	// EndpointInterval is how often local endpoints are re-read.
	EndpointInterval time.Duration
	// InterfaceAddrs lists local addresses; nil reads the system's.
	InterfaceAddrs func() ([]InterfaceAddr, error)
	// LookupHost resolves the coordinator's host for the MTU probe; nil
	// means the system resolver.
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
	// Ping sends ICMP echoes; nil means raw ICMP sockets (needs root).
	Ping PingFunc
	// Rand returns a uniform value in [0, n); nil means math/rand/v2.
	Rand func(n int64) int64
	// Now is the clock for certificate times and node key expiry; nil
	// means time.Now.
	Now func() time.Time
	// Hostname returns the host name to enroll with when Up names none.
	Hostname func() (string, error)
	// FlowInterval is how often flow summaries are reported to the
	// coordinator; zero or negative turns flow logs off (no accounting in
	// the data plane at all).
	FlowInterval time.Duration
	// FlowMaxKeys caps the distinct flows counted per interval (the rest
	// are counted as overflow); zero means flowlog.DefaultMaxKeys.
	FlowMaxKeys int

	// Posture reads the host's posture (see posture.go); nil means the
	// system's (NewSystemPosture).
	Posture PostureCollector
	// PostureInterval is how often the posture is re-read (and reported
	// if it changed); zero means DefaultPostureInterval, negative only on
	// every new stream.
	PostureInterval time.Duration
	// Timer starts the node key expiry timer; nil means time.NewTimer.
	Timer TimerFunc
}

func (c *Config) setDefaults() error {
	if c.StateDir == "" && !c.MemoryState {
		return errors.New("agent: no state dir")
	}
	if c.NewEngine == nil {
		return errors.New("agent: no engine")
	}
	if c.Interface == "" {
		c.Interface = DefaultInterface
	}
	if len(c.Interface) > 15 {
		return errors.New("agent: interface name longer than 15 bytes")
	}
	if c.ListenPort == 0 {
		c.ListenPort = DefaultListenPort
	}
	if c.ListenPort < 1 || c.ListenPort > 65535 {
		return errors.New("agent: listen port out of range")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.UpTimeout <= 0 {
		c.UpTimeout = DefaultUpTimeout
	}
	if c.KeyRotation == 0 {
		c.KeyRotation = DefaultKeyRotation
	}
	if c.EndpointInterval <= 0 {
		c.EndpointInterval = DefaultEndpointInterval
	}
	if c.InterfaceAddrs == nil {
		c.InterfaceAddrs = systemInterfaceAddrs
	}
	if c.LookupHost == nil {
		c.LookupHost = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if c.Ping == nil {
		c.Ping = icmpEcho
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Backoff.Rand == nil {
		c.Backoff.Rand = c.Rand
	}
	if c.Posture == nil {
		c.Posture = NewSystemPosture(c.Logger)
	}
	if c.PostureInterval == 0 {
		c.PostureInterval = DefaultPostureInterval
	}
	if c.Timer == nil {
		c.Timer = realTimer
	}
	return nil
}

// Log keys.
const (
	logErr     = "err"
	logNode    = "node"
	logName    = "name"
	logVersion = "version"
	logDelay   = "delay"
	logExpires = "expires"
	logAddrs   = "addresses"
	logPeers   = "peers"
	logMTU     = "mtu"
)
