package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/latchnet/latch/agent/control"
	"github.com/latchnet/latch/agent/state"
	"github.com/latchnet/latch/overlay"
	"github.com/latchnet/latch/wire"
)

// ErrClosed is returned by calls on a closed agent.
var ErrClosed = errors.New("agent is shutting down")

// Agent is one node's agent. Its methods are safe for concurrent use.
type Agent struct {
	cfg Config
	log *slog.Logger
	dir *state.Dir

	// ctx ends with Close; every session's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc

	// rotMu serialises WireGuard key rotations. Lock order: rotMu, engMu,
	// mu; rotMu is never taken with opMu held.
	rotMu sync.Mutex

	// opMu serialises whatever starts or stops a session or the engine:
	// Run's start, Up, Down and Close. Lock order: opMu, engMu, mu.
	opMu sync.Mutex

	// applyMu serialises pushing netmaps to the data plane (apply and
	// enforceExpiry), so a timer's re-apply never pushes an older map
	// over a newer one. Lock order: opMu, applyMu, engMu, mu.
	applyMu sync.Mutex

	// engMu guards the two fields below.
	engMu sync.Mutex
	// engine is the data plane; nil while down.
	engine Engine
	// applied is the last config engine accepted; nil for a new engine.
	applied *overlay.Config

	// mu guards everything below.
	mu sync.Mutex
	// st is the node's identity, keys and certificates; nil until
	// enrolled. It is never modified, only replaced.
	st *state.State
	// tlsCert is st's certificate and key for mTLS; nil iff st is.
	tlsCert     *tls.Certificate
	wantRunning bool
	// sess is non-nil while the node is up.
	sess *session
	// netmap is the newest netmap, cached or live; nil if none.
	netmap    *wire.Netmap
	connected bool
	refused   bool
	// live is set once the current session got a netmap from the
	// coordinator.
	live    bool
	lastErr string
	// cacheErr says why the cached netmap was refused at start; it stays
	// until a signed netmap from the coordinator is applied.
	cacheErr  string
	engineErr error
	// lastRotated is when the current WireGuard key was set; zero until
	// first needed (then read from the key file's time).
	lastRotated time.Time
	// nextExpiry is the next node key expiry in netmap (see expiry.go);
	// zero if none is ahead.
	nextExpiry time.Time
	// posture is the posture last collected; nil until first collected.
	posture *wire.Posture
	// postureAcked is the posture the coordinator last acknowledged
	// (at enrollment or by an update); nil if unknown.
	postureAcked *wire.Posture
	// changed is closed and replaced whenever a field above changes.
	changed chan struct{}
	closed  bool

	// flows aggregates the data plane's flow counts and reports them;
	// nil when flow logs are off. Set by New, never changed (flows.go).
	flows *flowReporter
}

// New opens the state directory and loads the node's identity, if any.
// A state directory that cannot be used is an error; nothing is started
// until Run.
func New(cfg Config) (*Agent, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	dir, err := openState(cfg) // leave.go
	if err != nil {
		return nil, err
	}
	// A crash while committing a confirmed key rotation is finished
	// before the identity is read.
	if err := dir.FinishRotation(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, dir: dir, changed: make(chan struct{})}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.flows = newFlowReporter(cfg)

	st, err := dir.Load()
	switch {
	case errors.Is(err, state.ErrNoIdentity):
		a.log.Info("not enrolled; waiting for latch up")
		return a, nil
	case err != nil:
		a.cancel()
		return nil, err
	}
	prefs, err := dir.LoadPrefs()
	if err != nil {
		a.cancel()
		return nil, err
	}
	nm, err := dir.LoadNetmap(st.Identity.NodeID, st.Identity.NetmapKey)
	if err != nil {
		// Fail closed: no peers and no rules until the coordinator sends
		// a map signed with the pinned key.
		a.log.Error("refusing cached netmap; starting with no peers until the coordinator sends a signed netmap", logErr, err)
		a.cacheErr = err.Error() + "; running with no peers until the coordinator sends a signed netmap"
		nm = nil
	}
	a.st, a.tlsCert, a.netmap, a.wantRunning = st, tlsCertFor(st), nm, prefs.WantRunning
	a.log.Info("loaded identity", logNode, st.Identity.NodeID, logName, st.Identity.Name,
		logAddrs, st.Identity.Addresses, "coordinator", st.Identity.Coordinator)
	return a, nil
}

// Run brings a saved identity up (unless `latch down` was the last word),
// then serves until ctx ends, and closes the agent.
func (a *Agent) Run(ctx context.Context) error {
	a.opMu.Lock()
	a.mu.Lock()
	start := a.st != nil && a.wantRunning && !a.closed && a.sess == nil
	a.mu.Unlock()
	if start {
		a.startSessionLocked()
	}
	a.opMu.Unlock()
	select {
	case <-ctx.Done():
	case <-a.ctx.Done():
	}
	return a.Close()
}

// Close stops every goroutine of the agent and removes the interface. The
// state directory keeps the wish to run, so a restarted agent comes back
// up; an ephemeral node leaves the network first (leave.go). Close is
// idempotent.
func (a *Agent) Close() error {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	if a.ephemeral() {
		a.leaveLocked(leaveReasonExit) // leave.go
	}
	a.cancel()
	a.stopSessionLocked()
	return a.closeEngineLocked()
}

func tlsCertFor(st *state.State) *tls.Certificate {
	return &tls.Certificate{Certificate: [][]byte{st.Cert.Raw}, PrivateKey: st.CertKey, Leaf: st.Cert}
}

// currentCert returns the node certificate for a TLS handshake.
func (a *Agent) currentCert() (*tls.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tlsCert == nil {
		return nil, errors.New("no node certificate")
	}
	return a.tlsCert, nil
}

func (a *Agent) state() *state.State {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st
}

// changedLocked wakes everyone waiting for a state change. a.mu is held.
func (a *Agent) changedLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// startSessionLocked brings the node up: the data plane from the cached
// netmap at once, then the goroutines that talk to the coordinator.
// a.opMu is held; a.st is set.
func (a *Agent) startSessionLocked() {
	a.mu.Lock()
	st, nm := a.st, a.netmap
	a.mu.Unlock()
	client, err := control.NewClient(control.ClientConfig{
		BaseURL:     st.Identity.Coordinator,
		CA:          st.CA,
		Certificate: a.currentCert,
		NodeID:      st.Identity.NodeID,
		NetmapKey:   st.Identity.NetmapKey,
		Logger:      a.log,
		KeepAlive:   a.cfg.KeepAlive,
	})
	s := &session{a: a, client: client, kick: make(chan struct{}, 1),
		postureKick: make(chan struct{}, 1), expiryKick: make(chan struct{}, 1)}
	s.ctx, s.cancel = context.WithCancel(a.ctx)
	a.mu.Lock()
	a.sess, a.connected, a.refused, a.live, a.lastErr = s, false, false, false, ""
	a.changedLocked()
	a.mu.Unlock()
	if err != nil {
		// Only a corrupt identity gets here; say so rather than retry.
		a.setRefused(s, fmt.Sprintf("cannot connect: %v", err))
		return
	}
	if nm != nil {
		a.log.Info("starting from cached netmap", logVersion, nm.Version, logPeers, len(nm.Peers))
		a.apply(s, nm, nil, false)
	}
	s.wg.Add(6)
	go s.controlLoop()
	go s.renewLoop()
	go s.endpointLoop()
	go s.rotateLoop()
	if a.flows != nil {
		s.wg.Add(1)
		go s.flowLoop()
	}
	go s.postureLoop()
	go s.expiryLoop()
}

// stopSessionLocked ends the session's goroutines and waits for them. The
// engine keeps running. a.opMu is held.
func (a *Agent) stopSessionLocked() {
	a.mu.Lock()
	s := a.sess
	a.sess, a.connected, a.live = nil, false, false
	a.changedLocked()
	a.mu.Unlock()
	if s == nil {
		return
	}
	s.cancel()
	s.wg.Wait()
	if s.client != nil {
		s.client.Close()
	}
}

// closeEngineLocked removes the interface. a.opMu is held and no session
// runs.
func (a *Agent) closeEngineLocked() error {
	a.engMu.Lock()
	e := a.engine
	a.engine, a.applied = nil, nil
	a.engMu.Unlock()
	if e == nil {
		return nil
	}
	if err := e.Close(); err != nil {
		a.log.Error("closing the overlay interface", logErr, err)
		return fmt.Errorf("closing the overlay interface: %w", err)
	}
	a.log.Info("overlay interface removed", "interface", a.cfg.Interface)
	return nil
}

// apply pushes nm to the data plane (without the nodes whose key expired,
// see expiry.go) and records it; live netmaps (from the coordinator,
// verified with signature sig) are also cached on disk with sig. Calls for
// a session that is no longer current are dropped.
func (a *Agent) apply(s *session, nm *wire.Netmap, sig []byte, live bool) {
	a.applyMu.Lock()
	a.mu.Lock()
	st, current := a.st, a.sess == s
	a.mu.Unlock()
	if !current {
		a.applyMu.Unlock()
		return
	}
	now := a.cfg.Now()
	active, next := activeNetmap(nm, now)
	cfg := ConfigFromNetmap(active, st.WireGuardKey, a.cfg.ListenPort)
	err := a.reconfig(st, &cfg, nm.Version)

	a.mu.Lock()
	if a.sess == s {
		a.netmap, a.engineErr, a.nextExpiry = nm, err, next
		if err != nil {
			a.lastErr = err.Error()
		}
		if live {
			a.live, a.connected, a.cacheErr = true, true, ""
		}
		a.changedLocked()
	}
	a.mu.Unlock()
	a.applyMu.Unlock()
	s.kickExpiry()
	if err != nil {
		a.log.Error("applying netmap", logVersion, nm.Version, logErr, err)
	} else if active != nm {
		a.logExpired(nm, now)
	}
	if live {
		if err := a.dir.SaveNetmap(nm, sig); err != nil {
			a.log.Warn("caching netmap", logErr, err)
		}
	}
}

// reconfig creates the engine if needed and pushes cfg unless it is what
// the engine already has.
func (a *Agent) reconfig(st *state.State, cfg *overlay.Config, version uint64) error {
	a.engMu.Lock()
	defer a.engMu.Unlock()
	if a.engine == nil {
		mtu := a.overlayMTU(st.Identity.Coordinator)
		opts := EngineOptions{Interface: a.cfg.Interface, MTU: mtu, Logger: a.log}
		if a.flows != nil {
			opts.Flows = a.flows.agg
		}
		e, err := a.cfg.NewEngine(opts)
		if err != nil {
			return fmt.Errorf("creating the overlay interface: %w", err)
		}
		a.engine, a.applied = e, nil
		a.log.Info("overlay interface created", "interface", a.cfg.Interface, logMTU, mtu)
	}
	// The key is read under engMu: a rotation swaps it under engMu, so a
	// netmap computed before a rotation never pushes the old key.
	a.mu.Lock()
	if a.st != nil {
		cfg.PrivateKey = a.st.WireGuardKey
	}
	a.mu.Unlock()
	if a.applied != nil && configEqual(a.applied, cfg) {
		return nil
	}
	if err := a.engine.Reconfig(*cfg); err != nil {
		return fmt.Errorf("configuring the overlay: %w", err)
	}
	a.applied = cfg
	a.log.Info("overlay configured", logVersion, version, logPeers, len(cfg.Peers), "rules", len(cfg.Rules))
	return nil
}

// overlayMTU derives the overlay MTU from the underlay path towards the
// coordinator, falling back to DefaultMTU.
func (a *Agent) overlayMTU(coordinator string) int {
	if a.cfg.OverlayMTU == nil {
		return DefaultMTU
	}
	dst, err := a.resolveCoordinator(coordinator)
	if err == nil {
		var mtu int
		if mtu, err = a.cfg.OverlayMTU(dst); err == nil && mtu >= 1280 {
			return mtu
		} else if err == nil {
			err = fmt.Errorf("overlay MTU %d is below 1280", mtu)
		}
	}
	a.log.Warn("cannot derive the overlay MTU from the underlay; using the minimum", logMTU, DefaultMTU, logErr, err)
	return DefaultMTU
}

func (a *Agent) resolveCoordinator(coordinator string) (netip.Addr, error) {
	u, err := url.Parse(coordinator)
	if err != nil {
		return netip.Addr{}, err
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap(), nil
	}
	ctx, cancel := context.WithTimeout(a.ctx, 3*time.Second)
	defer cancel()
	ips, err := a.cfg.LookupHost(ctx, host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolving %s: %w", host, err)
	}
	if len(ips) == 0 {
		return netip.Addr{}, fmt.Errorf("resolving %s: no addresses", host)
	}
	return ips[0].Unmap(), nil
}

// setRefused records that the coordinator will not take this node back.
func (a *Agent) setRefused(s *session, msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sess != s {
		return
	}
	a.refused, a.connected, a.lastErr = true, false, msg
	a.changedLocked()
}

func (a *Agent) isRefused(s *session) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sess == s && a.refused
}

// setDisconnected records a lost stream.
func (a *Agent) setDisconnected(s *session, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sess != s {
		return
	}
	a.connected, a.lastErr = false, err.Error()
	a.changedLocked()
}

// lastErrorLocked is the error status reports: a refused cache first,
// while it matters, then the latest error. a.mu is held.
func (a *Agent) lastErrorLocked() string {
	switch {
	case a.cacheErr == "":
		return a.lastErr
	case a.lastErr == "":
		return a.cacheErr
	}
	return a.cacheErr + "; then: " + a.lastErr
}

func (a *Agent) setLastErr(s *session, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sess != s {
		return
	}
	a.lastErr = err.Error()
	a.changedLocked()
}
