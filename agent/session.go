package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/latchnet/latch/agent/control"
	"github.com/latchnet/latch/wire"
)

// session is one period of being up: the coordinator stream, certificate
// renewal and endpoint reporting. Its owner (the Agent) cancels it and
// waits for wg.
type session struct {
	a      *Agent
	client *control.Client // nil only if the identity could not make one
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// kick asks the endpoint loop to compare endpoints now.
	kick chan struct{}
	// postureKick asks the posture loop to compare posture now.
	postureKick chan struct{}
	// expiryKick tells the expiry loop the netmap changed.
	expiryKick chan struct{}
}

func (s *session) kickEndpoints() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// sleep waits d or until the session ends; it reports whether to go on.
func (s *session) sleep(d time.Duration) bool {
	if d <= 0 {
		return s.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// controlLoop holds the netmap stream, reconnecting with backoff, until
// the session ends or the coordinator refuses the node.
func (s *session) controlLoop() {
	defer s.wg.Done()
	a := s.a
	attempt := 0
	for {
		if st := a.state(); !a.cfg.Now().Before(st.Cert.NotAfter) {
			msg := fmt.Sprintf("node certificate expired at %s; enroll again with latch up --auth-key", st.Cert.NotAfter.UTC().Format(time.RFC3339))
			a.log.Error("not connecting", logErr, msg)
			a.setRefused(s, msg)
			return
		}
		got := false
		err := s.client.Stream(s.ctx, func(nm *wire.Netmap, sig []byte, full bool) {
			if !got {
				a.log.Info("connected to coordinator", logVersion, nm.Version, logPeers, len(nm.Peers))
			}
			got = true
			a.apply(s, nm, sig, true)
			if full {
				s.kickEndpoints()
				s.kickPosture()
			}
		})
		if s.ctx.Err() != nil {
			return
		}
		if errors.Is(err, control.ErrRefused) {
			msg := err.Error() + "; the node's state is kept: enroll again with latch up --auth-key"
			a.log.Error("coordinator refused this node; not retrying", logErr, err)
			a.setRefused(s, msg)
			return
		}
		a.setDisconnected(s, err)
		if got {
			attempt = 0
		}
		d := a.cfg.Backoff.Delay(attempt)
		attempt++
		a.log.Warn("coordinator stream ended; reconnecting", logErr, err, logDelay, d)
		if !s.sleep(d) {
			return
		}
	}
}

// renewAt returns when to renew a certificate valid from nb to na: at
// 45-55% of its life, uniformly, so a fleet enrolled together spreads out.
func renewAt(nb, na time.Time, rnd func(int64) int64) time.Time {
	life := na.Sub(nb)
	if life <= 0 {
		return nb
	}
	j := jitter(life/10, rnd)
	return nb.Add(life*45/100 + j)
}

// jitter returns a uniform duration in [0, d].
func jitter(d time.Duration, rnd func(int64) int64) time.Duration {
	if d <= 0 {
		return 0
	}
	if rnd == nil {
		rnd = rand.Int64N
	}
	return time.Duration(rnd(int64(d) + 1))
}

// renewLoop renews the node certificate at half-life, retrying failures
// with backoff.
func (s *session) renewLoop() {
	defer s.wg.Done()
	a := s.a
	attempt := 0
	for {
		var wait time.Duration
		if attempt == 0 {
			cert := a.state().Cert
			wait = renewAt(cert.NotBefore, cert.NotAfter, a.cfg.Rand).Sub(a.cfg.Now())
		} else {
			wait = a.cfg.Backoff.Delay(attempt - 1)
		}
		if !s.sleep(wait) {
			return
		}
		if a.isRefused(s) {
			return // renewing cannot help a node the coordinator refuses
		}
		if err := a.renewCert(s); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			attempt++
			a.log.Warn("renewing node certificate", logErr, err)
			a.setLastErr(s, err)
			continue
		}
		attempt = 0
	}
}

// renewCert gets a new certificate for the same certificate key and
// stores it.
func (a *Agent) renewCert(s *session) error {
	st := a.state()
	pub := st.CertKey.Public().(ed25519.PublicKey)
	csr, err := makeCSR(st.CertKey, st.Identity.Hostname)
	if err != nil {
		return err
	}
	cert, err := s.client.Renew(s.ctx, csr)
	if err != nil {
		return err
	}
	if err := control.CheckNodeCert(cert, st.CA, pub, st.Identity.TrustDomain, st.Identity.NodeID); err != nil {
		return fmt.Errorf("renewing certificate: %w", err)
	}
	if err := a.dir.SaveCert(cert); err != nil {
		return err
	}
	a.mu.Lock()
	// The state may have been replaced by a key rotation meanwhile; the
	// certificate belongs to whatever state still has its key.
	if a.st != nil && a.st.CertKey.Equal(st.CertKey) {
		next := *a.st
		next.Cert = cert
		a.st, a.tlsCert = &next, tlsCertFor(&next)
		a.changedLocked()
	}
	a.mu.Unlock()
	// Idle connections authenticated with the old certificate go; the
	// next call presents the new one.
	s.client.CloseIdleConnections()
	a.log.Info("renewed node certificate", logExpires, cert.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// endpointLoop reports the node's endpoints whenever they differ from what
// the coordinator knows: after every new stream and on a timer.
func (s *session) endpointLoop() {
	defer s.wg.Done()
	a := s.a
	t := time.NewTicker(a.cfg.EndpointInterval)
	defer t.Stop()
	var sent []netip.AddrPort
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
			sent = nil // a new stream: compare with what it says
		case <-t.C:
		}
		a.mu.Lock()
		connected, nm := a.connected, a.netmap
		a.mu.Unlock()
		if !connected || nm == nil {
			continue
		}
		eps, err := a.localEndpoints(nm.Self.Addresses)
		if err != nil {
			a.log.Warn("reading local endpoints", logErr, err)
			continue
		}
		if len(eps) == 0 || slices.Equal(eps, nm.Self.Endpoints) || slices.Equal(eps, sent) {
			continue
		}
		if err := s.client.Update(s.ctx, wire.UpdateRequest{Endpoints: eps}); err != nil {
			if s.ctx.Err() == nil {
				a.log.Warn("reporting endpoints", logErr, err)
			}
			continue
		}
		sent = eps
		a.log.Info("reported endpoints", "endpoints", eps)
	}
}

func (a *Agent) localEndpoints(self []netip.Prefix) ([]netip.AddrPort, error) {
	addrs, err := a.cfg.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	return LocalEndpoints(addrs, a.cfg.Interface, self, a.cfg.ListenPort), nil
}
