package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/latchnet/latch/agent/control"
	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/agent/state"
	"github.com/latchnet/latch/wire"
)

var _ localapi.Backend = (*Agent)(nil)

// Up brings the node up and waits for its first netmap from the
// coordinator. It enrolls first when the node has no identity, or when an
// enrollment key comes with another coordinator URL, or after the
// coordinator refused the current identity. An enrolled node needs no key.
func (a *Agent) Up(ctx context.Context, req localapi.UpRequest) (localapi.UpResponse, error) {
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = a.cfg.UpTimeout
	}
	a.opMu.Lock()
	s, enrolled, err := a.upLocked(ctx, req)
	a.opMu.Unlock()
	if err != nil {
		return localapi.UpResponse{}, err
	}
	resp, err := a.waitLive(ctx, s, timeout)
	resp.Enrolled = enrolled
	return resp, err
}

func (a *Agent) upLocked(ctx context.Context, req localapi.UpRequest) (*session, bool, error) {
	a.mu.Lock()
	closed, st, refused := a.closed, a.st, a.refused
	a.mu.Unlock()
	if closed {
		return nil, false, ErrClosed
	}
	var coord string
	if req.Coordinator != "" {
		var err error
		if coord, err = control.BaseURL(req.Coordinator); err != nil {
			return nil, false, localapi.Errorf(http.StatusBadRequest, "%v", err)
		}
	}
	otherCoord := st != nil && coord != "" && coord != st.Identity.Coordinator
	enroll := false
	cred := req.AuthKey != "" || req.IDToken != "" // an enrollment key or an ID token (federation.go)
	switch {
	case st == nil && !cred:
		return nil, false, localapi.Errorf(http.StatusBadRequest, "not enrolled: pass --coordinator and --auth-key (or --id-token)")
	case st == nil:
		enroll = true
	case cred && (refused || otherCoord):
		enroll = true
	case otherCoord:
		return nil, false, localapi.Errorf(http.StatusBadRequest, "enrolled with %s; pass --auth-key to enroll with %s", st.Identity.Coordinator, coord)
	case cred:
		a.log.Info("already enrolled; the enrollment key or ID token was not used")
	}
	if enroll {
		if coord == "" {
			return nil, false, localapi.Errorf(http.StatusBadRequest, "--coordinator is required to enroll")
		}
		if err := a.enrollLocked(ctx, req, coord); err != nil {
			return nil, false, err
		}
	}

	if err := a.dir.SavePrefs(state.Prefs{WantRunning: true}); err != nil {
		return nil, false, err
	}
	a.mu.Lock()
	a.wantRunning = true
	s, refused := a.sess, a.refused
	a.mu.Unlock()
	if s != nil && refused {
		a.stopSessionLocked()
		s = nil
	}
	if s == nil {
		a.startSessionLocked()
	}
	a.mu.Lock()
	s = a.sess
	a.mu.Unlock()
	return s, enroll, nil
}

// enrollLocked enrolls with a fresh WireGuard key and certificate key and
// replaces any previous identity. a.opMu is held.
func (a *Agent) enrollLocked(ctx context.Context, req localapi.UpRequest, coord string) error {
	hostname := req.Hostname
	if hostname == "" {
		get := a.cfg.Hostname
		if get == nil {
			get = os.Hostname
		}
		h, err := get()
		if err != nil {
			return fmt.Errorf("reading host name: %w", err)
		}
		hostname = h
	}
	wgKey, certKey, err := newKeys()
	if err != nil {
		return err
	}
	csr, err := makeCSR(certKey, hostname)
	if err != nil {
		return err
	}
	eps, err := a.localEndpoints(nil)
	if err != nil {
		a.log.Warn("reading local endpoints", logErr, err)
	}
	pub := wire.NodePublic(wgKey.PublicKey())
	posture := a.collectPosture(ctx)
	en, err := enroll(ctx, coord, req, wire.EnrollRequest{
		AuthKey:      req.AuthKey,
		IDToken:      req.IDToken,
		Hostname:     hostname,
		Tags:         req.Tags,
		Ephemeral:    req.Ephemeral || a.cfg.MemoryState, // a memory-only node is always ephemeral
		WireGuardKey: pub,
		CSR:          csr,
		Endpoints:    eps,
		Posture:      &posture,
	})
	if err != nil {
		// Enroll's errors never contain the key.
		a.log.Warn("enrollment failed", "coordinator", coord, logErr, err)
		return err
	}
	st := &state.State{
		Identity: state.Identity{
			NodeID:       en.Node.ID,
			Name:         en.Node.Name,
			Addresses:    en.Node.Addresses,
			Coordinator:  coord,
			TrustDomain:  en.TrustDomain,
			Hostname:     hostname,
			WireGuardKey: pub,
			NetmapKey:    en.NetmapKey,
			Enrolled:     a.cfg.Now().UTC(),
			Ephemeral:    en.Node.Ephemeral,
		},
		WireGuardKey: wgKey,
		CertKey:      certKey,
		Cert:         en.Cert,
		CA:           en.CA,
	}
	// A previous identity's data plane and stream go first.
	a.stopSessionLocked()
	if err := a.closeEngineLocked(); err != nil {
		return err
	}
	if err := a.dir.SaveEnrollment(st); err != nil {
		return err
	}
	a.mu.Lock()
	a.st, a.tlsCert, a.netmap, a.refused, a.lastErr, a.cacheErr = st, tlsCertFor(st), nil, false, "", ""
	a.lastRotated, a.postureAcked = time.Time{}, &posture
	a.changedLocked()
	a.mu.Unlock()
	a.log.Info("enrolled", logNode, en.Node.ID, logName, en.Node.Name, logAddrs, en.Node.Addresses,
		"ca_fingerprint", wire.FormatFingerprint(wire.CAFingerprint(en.CA.Raw)))
	return nil
}

// waitLive waits until session s has a netmap from the coordinator applied
// to the data plane.
func (a *Agent) waitLive(ctx context.Context, s *session, timeout time.Duration) (localapi.UpResponse, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		a.mu.Lock()
		ch := a.changed
		cur, live, refused, engErr, lastErr, nm := a.sess, a.live, a.refused, a.engineErr, a.lastErr, a.netmap
		a.mu.Unlock()
		switch {
		case cur != s || s == nil:
			return localapi.UpResponse{}, errors.New("interrupted: the node was brought down")
		case refused:
			return localapi.UpResponse{}, errors.New(lastErr)
		case live && engErr != nil:
			return localapi.UpResponse{}, engErr
		case live:
			return localapi.UpResponse{NodeID: nm.Self.ID, Name: nm.Self.Name, Addresses: nm.Self.Addresses}, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return localapi.UpResponse{}, ctx.Err()
		case <-t.C:
			msg := fmt.Sprintf("timed out after %s waiting for a netmap from the coordinator", timeout)
			if lastErr != "" {
				msg += " (last error: " + lastErr + ")"
			}
			if nm != nil {
				msg += "; the overlay runs from the cached netmap meanwhile"
			}
			return localapi.UpResponse{}, errors.New(msg)
		}
	}
}

// Down disconnects from the coordinator and removes the interface. The
// node stays enrolled, and stays down across restarts until Up; an
// ephemeral node instead leaves the network and forgets its identity
// (leave.go).
func (a *Agent) Down(ctx context.Context) error {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	a.mu.Lock()
	closed, st := a.closed, a.st
	a.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if st == nil {
		return localapi.Errorf(http.StatusConflict, "not enrolled")
	}
	if a.ephemeral() {
		a.leaveLocked(leaveReasonDown) // leave.go: deleted, not kept
		return nil
	}
	a.stopSessionLocked()
	err := a.closeEngineLocked()
	if perr := a.dir.SavePrefs(state.Prefs{WantRunning: false}); perr != nil && err == nil {
		err = perr
	}
	a.mu.Lock()
	a.wantRunning = false
	a.changedLocked()
	a.mu.Unlock()
	a.log.Info("down: disconnected and removed the interface; still enrolled")
	return err
}

// Status reports the agent's state and its peers' data-plane counters.
func (a *Agent) Status(ctx context.Context) (localapi.Status, error) {
	a.mu.Lock()
	st, sess, nm := a.st, a.sess, a.netmap
	out := localapi.Status{LastError: a.lastErrorLocked(), Peers: []localapi.Peer{}, Posture: a.posture}
	switch {
	case st == nil:
		out.State = localapi.StateNeedsLogin
	case sess == nil:
		out.State = localapi.StateStopped
	case a.refused:
		out.State = localapi.StateRefused
	case a.connected:
		out.State = localapi.StateConnected
	default:
		out.State = localapi.StateConnecting
	}
	a.mu.Unlock()
	if st == nil {
		return out, nil
	}
	out.Coordinator = st.Identity.Coordinator
	out.CertExpires = st.Cert.NotAfter.UTC()
	out.Interface = a.cfg.Interface
	if nm == nil {
		out.Self = &localapi.Node{ID: st.Identity.NodeID, Name: st.Identity.Name, Key: st.Identity.WireGuardKey, Addresses: st.Identity.Addresses}
		return out, nil
	}
	out.Self = nodeOf(nm.Self)
	out.NetmapVersion = nm.Version
	out.Rules = slices.Clone(nm.Rules)
	now := a.cfg.Now()
	out.KeyExpiry = nm.Self.KeyExpiry
	out.KeyExpired = keyExpired(nm.Self.KeyExpiry, now)
	// Nodes whose key expired are gone from the data plane; they are
	// gone from the status too.
	nm, _ = activeNetmap(nm, now)

	stats := map[wire.NodePublic]EnginePeer{}
	a.engMu.Lock()
	e := a.engine
	a.engMu.Unlock()
	if e != nil && sess != nil {
		es, err := e.Status()
		if err != nil {
			a.log.Debug("reading engine status", logErr, err)
		}
		for _, p := range es.Peers {
			stats[p.Key] = p
		}
	}
	for _, p := range nm.Peers {
		ps := localapi.Peer{Node: *nodeOf(p.Node), Rules: slices.Clone(p.Rules)}
		if s, ok := stats[p.Key]; ok {
			ps.Endpoint, ps.LastHandshake, ps.RxBytes, ps.TxBytes = s.Endpoint, s.LastHandshake, s.RxBytes, s.TxBytes
		}
		out.Peers = append(out.Peers, ps)
	}
	slices.SortFunc(out.Peers, func(x, y localapi.Peer) int { return cmp.Compare(x.Name, y.Name) })
	return out, nil
}

func nodeOf(n wire.Node) *localapi.Node {
	return &localapi.Node{ID: n.ID, Name: n.Name, Key: n.Key, Addresses: n.Addresses, Endpoints: n.Endpoints, Tags: n.Tags, KeyExpiry: n.KeyExpiry, Ephemeral: n.Ephemeral}
}

// Ping limits.
const (
	defaultPingCount = 4
	maxPingCount     = 1000
)

// Ping sends ICMP echo requests to a peer's overlay IPv4 address, naming
// the target first and then every reply as it comes.
func (a *Agent) Ping(ctx context.Context, req localapi.PingRequest, emit func(localapi.PingEvent)) error {
	count := cmp.Or(req.Count, defaultPingCount)
	if count < 1 || count > maxPingCount {
		return localapi.Errorf(http.StatusBadRequest, "ping count must be 1..%d", maxPingCount)
	}
	interval := max(cmp.Or(req.Interval, time.Second), 10*time.Millisecond)
	timeout := max(cmp.Or(req.Timeout, 2*time.Second), 10*time.Millisecond)

	a.mu.Lock()
	up, nm := a.sess != nil, a.netmap
	a.mu.Unlock()
	if !up || nm == nil {
		return localapi.Errorf(http.StatusConflict, "latch is down: run latch up first")
	}
	nm, _ = activeNetmap(nm, a.cfg.Now())
	peer, ok := findPeer(nm, req.Peer)
	if !ok {
		return localapi.Errorf(http.StatusNotFound, "no peer named or addressed %q", req.Peer)
	}
	var dst netip.Addr
	for _, p := range peer.Addresses {
		if p.Addr().Is4() {
			dst = p.Addr()
			break
		}
	}
	if !dst.IsValid() {
		return localapi.Errorf(http.StatusBadRequest, "peer %s has no overlay IPv4 address", peer.Name)
	}
	emit(localapi.PingEvent{Target: &localapi.PingTarget{Name: peer.Name, Address: dst}})
	next := time.Now()
	for seq := 1; seq <= count; seq++ {
		rtt, err := a.cfg.Ping(ctx, dst, seq, timeout)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r := localapi.PingReply{Seq: seq, RTT: rtt}
		if err != nil {
			r.RTT, r.Error = 0, err.Error()
		}
		emit(localapi.PingEvent{Reply: &r})
		if seq == count {
			break
		}
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
	}
	return nil
}

// findPeer finds a peer by name (case-insensitively) or overlay address.
func findPeer(nm *wire.Netmap, q string) (wire.Node, bool) {
	q = strings.TrimSpace(q)
	ip, ipErr := netip.ParseAddr(q)
	for _, p := range nm.Peers {
		if strings.EqualFold(p.Name, q) {
			return p.Node, true
		}
		if ipErr == nil && slices.ContainsFunc(p.Addresses, func(pf netip.Prefix) bool { return pf.Addr() == ip.Unmap() }) {
			return p.Node, true
		}
	}
	return wire.Node{}, false
}

// RequestAccess asks the coordinator, over this node's mutual TLS
// identity, for just-in-time access from this node, and returns the
// request as the coordinator recorded it. The coordinator decides who may
// request what; the agent checks only that the request is complete and
// that the node is up. A refusal keeps the coordinator's status and
// reason.
func (a *Agent) RequestAccess(ctx context.Context, req wire.NodeAccessRequest) (wire.AccessRequest, error) {
	switch {
	case strings.TrimSpace(req.To) == "":
		return wire.AccessRequest{}, localapi.Errorf(http.StatusBadRequest, "access request: the service to reach is required")
	case req.Duration <= 0:
		return wire.AccessRequest{}, localapi.Errorf(http.StatusBadRequest, "access request: the duration must be positive")
	case strings.TrimSpace(req.Reason) == "":
		return wire.AccessRequest{}, localapi.Errorf(http.StatusBadRequest, "access request: a reason is required")
	}
	c, err := a.coordinatorClient()
	if err != nil {
		return wire.AccessRequest{}, err
	}
	resp, err := c.RequestAccess(ctx, req)
	if err != nil {
		a.log.Warn("access request failed", "to", req.To, logErr, err)
		return wire.AccessRequest{}, coordinatorError(err)
	}
	a.log.Info("access requested", "id", resp.ID, "to", req.To, "port", req.Port, "duration", req.Duration, "state", resp.State)
	return resp, nil
}
