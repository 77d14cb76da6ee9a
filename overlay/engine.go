// Package overlay is a Latch node's data plane: an in-process wireguard-go
// device on a TUN interface, with the node's packet filter between the two.
//
// The agent describes the whole desired state in a Config and calls
// Engine.Reconfig; Reconfig changes only what differs (peers, addresses,
// routes, filter rules), so applying the same Config twice does nothing and
// adding one peer leaves the other peers' sessions alone.
//
// The device's UAPI socket is served, so `wg show <interface>` works on a
// Latch interface, and Reconfig itself configures the device through that
// socket with wgctrl.
//
// The TUN device is wrapped so that packets pass the node's packet filter
// (acl/filter): what WireGuard decrypts is checked before it reaches the
// kernel (default deny inbound); what the kernel sends records flow state on
// its way out. wireguard-go's batched I/O and the
// TUN's offloads (virtio-net header, GSO/GRO) stay intact; without them
// throughput drops about 3.5 times.
package overlay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/latchnet/latch/acl/filter"
	"github.com/latchnet/latch/wire"
	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Log keys.
const (
	logKeyIface     = "iface"
	logKeyMTU       = "mtu"
	logKeyBatch     = "batch_size"
	logKeyErr       = "err"
	logKeyComponent = "component"
	logKeyPeer      = "peer"
)

// ErrClosed is returned by an Engine's methods after Close.
var ErrClosed = errors.New("overlay engine closed")

// Options configure New.
type Options struct {
	// Interface is the name of the TUN interface to create, at most 15
	// bytes. The UAPI socket directory is shared by all network
	// namespaces of a machine, so the name must be unique per machine.
	Interface string
	// MTU of the interface; zero means DefaultMTU. Derive it with
	// OverlayMTU(UnderlayMTU(coordinator)).
	MTU int
	// Logger receives the engine's and wireguard-go's logs; nil discards
	// them.
	Logger *slog.Logger
	// Now is the packet filter's clock (rule expiry is enforced on it);
	// nil means time.Now.
	Now func() time.Time
	// FlowCapacity bounds the filter's flow table; zero takes the
	// filter's default.
	FlowCapacity int
	// Flows, when set, receives the flow counts of every batch of
	// packets the filter judged (see FlowSink); nil turns flow accounting
	// off.
	Flows FlowSink
}

// Engine runs one WireGuard interface. Its methods are safe for concurrent
// use.
type Engine struct {
	name   string
	mtu    int
	log    *slog.Logger
	filter *filter.Filter // never nil

	wg   wgConfigurer
	link linkConfigurer

	// The OS side; all nil or zero in unit tests built by newEngine.
	dev      *device.Device
	linkIdx  int
	uapi     net.Listener
	uapiDone sync.WaitGroup // the UAPI accept loop and its handlers

	// stop is closed by Close; kicks counts the handshake kicks waiting
	// (kick.go), which Close waits for.
	stop  chan struct{}
	kicks sync.WaitGroup

	// Lock order: mu before connsMu.

	mu     sync.Mutex // guards the fields below; held by Reconfig, Status and Close
	closed bool
	// endpoints holds the endpoint Reconfig last set for each peer. The
	// device's own idea of a peer's endpoint roams with its traffic, so
	// an unchanged Config must not reset it; only a changed one may.
	endpoints map[wire.NodePublic]netip.AddrPort
	// heldKeepalive holds, for each new peer whose persistent keepalive
	// is held back (the peer's key is the lower one, see kick.go), the
	// keepalive to turn on when its kick is due.
	heldKeepalive map[wire.NodePublic]time.Duration
	// added numbers each peer's addition to the device (from addSeq), so
	// that the kicks of a peer removed since do not touch the peer added
	// again under the same key.
	added  map[wire.NodePublic]uint64
	addSeq uint64
	// rules and self are what the filter was last given; haveRules says
	// whether it was given anything yet.
	rules     []wire.FilterRule
	self      []netip.Prefix
	haveRules bool

	connsMu sync.Mutex
	conns   map[net.Conn]struct{} // guarded by connsMu: UAPI connections being served
}

// newEngine assembles an Engine around its OS-facing parts.
func newEngine(name string, mtu int, log *slog.Logger, flt *filter.Filter, wg wgConfigurer, link linkConfigurer) *Engine {
	return &Engine{
		name:          name,
		mtu:           mtu,
		log:           log,
		filter:        flt,
		wg:            wg,
		link:          link,
		endpoints:     map[wire.NodePublic]netip.AddrPort{},
		heldKeepalive: map[wire.NodePublic]time.Duration{},
		added:         map[wire.NodePublic]uint64{},
		conns:         map[net.Conn]struct{}{},
		stop:          make(chan struct{}),
	}
}

// New creates the TUN interface opts.Interface with the packet filter in
// its path, starts a wireguard-go device on it, and serves the device's
// UAPI socket. The interface stays down and the device without keys or
// peers until the first Reconfig.
//
// A UAPI socket left behind by a killed process is removed; if another live
// process serves it, New fails with ErrSocketInUse before creating
// anything.
func New(opts Options) (*Engine, error) {
	name := opts.Interface
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t\n") {
		return nil, fmt.Errorf("creating overlay: invalid interface name %q (1-15 bytes, no '/' or spaces)", name)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With(logKeyIface, name)
	mtu := opts.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < 576 || mtu > 65535 {
		return nil, fmt.Errorf("creating overlay %s: MTU %d out of range 576-65535", name, mtu)
	}

	uapi, err := listenUAPI(name)
	if err != nil {
		return nil, fmt.Errorf("creating overlay %s: %w", name, err)
	}
	tdev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		uapi.Close()
		return nil, fmt.Errorf("creating overlay %s: creating TUN: %w", name, err)
	}
	flt := filter.New(filter.Options{Now: opts.Now, FlowCapacity: opts.FlowCapacity})
	e := newEngine(name, mtu, log, flt, nil, nil)
	e.dev = device.NewDevice(newFilterTUN(tdev, flt, opts.Flows), conn.NewDefaultBind(), deviceLogger(log))
	e.uapi = uapi
	e.uapiDone.Add(1)
	go e.serveUAPI()

	fail := func(err error) (*Engine, error) {
		e.Close()
		return nil, fmt.Errorf("creating overlay %s: %w", name, err)
	}
	link, err := newNetlinkLink(name)
	if err != nil {
		return fail(err)
	}
	e.link, e.linkIdx = link, link.index
	wg, err := newWgctrlConfigurer(name)
	if err != nil {
		return fail(err)
	}
	e.wg = wg
	log.Info("overlay created", logKeyMTU, mtu, logKeyBatch, tdev.BatchSize())
	return e, nil
}

// deviceLogger routes wireguard-go's logs to log, formatting verbose lines
// only when debug logging is on.
func deviceLogger(log *slog.Logger) *device.Logger {
	log = log.With(logKeyComponent, "wireguard")
	l := &device.Logger{
		Verbosef: device.DiscardLogf,
		Errorf:   func(format string, args ...any) { log.Warn(fmt.Sprintf(format, args...)) },
	}
	if log.Enabled(context.Background(), slog.LevelDebug) {
		l.Verbosef = func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) }
	}
	return l
}

// serveUAPI accepts UAPI connections until the listener closes, handing
// each to the device.
func (e *Engine) serveUAPI() {
	defer e.uapiDone.Done()
	for {
		c, err := e.uapi.Accept()
		if err != nil {
			return
		}
		e.connsMu.Lock()
		if e.conns == nil { // closing
			e.connsMu.Unlock()
			c.Close()
			return
		}
		e.conns[c] = struct{}{}
		e.connsMu.Unlock()
		e.uapiDone.Add(1)
		go func() {
			defer e.uapiDone.Done()
			e.dev.IpcHandle(c) // closes c
			e.connsMu.Lock()
			delete(e.conns, c)
			e.connsMu.Unlock()
		}()
	}
}

// Name returns the interface name.
func (e *Engine) Name() string { return e.name }

// MTU returns the interface MTU.
func (e *Engine) MTU() int { return e.mtu }

// FilterCounts returns how many packets the filter gave each reason.
func (e *Engine) FilterCounts() map[filter.Reason]uint64 { return e.filter.Counts() }

// Close brings the device down and removes the interface and the UAPI
// socket. It waits for every goroutine the engine started. Closing twice is
// harmless.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	// Pending kicks take mu once their delay is over; let them see closed
	// and end before going on. Reconfig refuses from now on, so none start.
	close(e.stop)
	e.mu.Unlock()
	e.kicks.Wait()
	e.mu.Lock()
	var errs []error
	if e.uapi != nil {
		if err := e.uapi.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing UAPI listener: %w", err))
		}
		e.connsMu.Lock()
		for c := range e.conns {
			c.Close()
		}
		e.conns = nil
		e.connsMu.Unlock()
		e.uapiDone.Wait()
	}
	if e.wg != nil {
		if err := e.wg.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing wgctrl: %w", err))
		}
	}
	if e.dev != nil {
		// Closing the device closes the TUN; the kernel removes a TUN
		// interface when its last descriptor closes.
		e.dev.Close()
	}
	if e.linkIdx != 0 {
		if l, err := netlink.LinkByIndex(e.linkIdx); err == nil && l.Attrs().Name == e.name {
			if err := netlink.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("removing interface: %w", err))
			}
		}
	}
	if e.uapi != nil {
		// The listener unlinks its socket on close; make sure, without
		// touching a socket another process may have made since.
		if err := clearStaleSocket(socketPath(e.name)); err != nil && !errors.Is(err, ErrSocketInUse) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing overlay %s: %w", e.name, err)
	}
	e.log.Info("overlay closed")
	return nil
}

// Status is a snapshot of the device.
type Status struct {
	Interface string
	PublicKey wire.NodePublic
	// ListenPort is the UDP port actually bound (the one picked, when
	// Config.ListenPort was 0); 0 before the device is up.
	ListenPort int
	MTU        int
	// Peers are sorted by key.
	Peers []PeerStatus
}

// PeerStatus describes one peer.
type PeerStatus struct {
	Key wire.NodePublic
	// Endpoint is where the peer was last heard from or configured;
	// invalid if neither.
	Endpoint   netip.AddrPort
	AllowedIPs []netip.Prefix
	// LastHandshake is the time of the last completed handshake; zero if
	// none.
	LastHandshake time.Time
	RxBytes       int64
	TxBytes       int64
	Keepalive     time.Duration
}

// Status reports the device's peers, handshakes and traffic.
func (e *Engine) Status() (*Status, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	d, err := e.wg.Device()
	if err != nil {
		return nil, fmt.Errorf("reading device %s: %w", e.name, err)
	}
	st := &Status{Interface: e.name, PublicKey: wire.NodePublic(d.PublicKey), ListenPort: d.ListenPort, MTU: e.mtu}
	for _, p := range d.Peers {
		ps := PeerStatus{
			Key:           wire.NodePublic(p.PublicKey),
			Endpoint:      udpAddrToAddrPort(p.Endpoint),
			AllowedIPs:    peerAllowedIPs(p),
			LastHandshake: p.LastHandshakeTime,
			RxBytes:       p.ReceiveBytes,
			TxBytes:       p.TransmitBytes,
			Keepalive:     p.PersistentKeepaliveInterval,
		}
		if ps.LastHandshake.Unix() == 0 {
			ps.LastHandshake = time.Time{}
		}
		st.Peers = append(st.Peers, ps)
	}
	slices.SortFunc(st.Peers, func(a, b PeerStatus) int { return strings.Compare(string(a.Key[:]), string(b.Key[:])) })
	return st, nil
}

func peerAllowedIPs(p wgtypes.Peer) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(p.AllowedIPs))
	for _, n := range p.AllowedIPs {
		if pr, ok := ipNetToPrefix(n); ok {
			out = append(out, pr)
		}
	}
	return out
}
