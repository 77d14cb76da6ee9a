package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/latchnet/latch/agent/control"
	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// WireGuard key rotation. The new key is written to the state directory
// as pending before the coordinator hears of it, so whatever crashes
// when, the node never loses a key the coordinator may have recorded:
// a pending key is offered again (the coordinator accepts the key it
// already has) until the coordinator confirms it, and only then does it
// become the node's key and reach the data plane. Peers learn the new key
// from the coordinator's delta; the sessions with them re-handshake, and
// flows inside the overlay survive as the kernel retransmits.

// rotateAt returns when to rotate a key set at last, every period: at
// 90-110% of it, uniformly, so a fleet enrolled together spreads out.
func rotateAt(last time.Time, every time.Duration, rnd func(int64) int64) time.Time {
	return last.Add(every*9/10 + jitter(every/5, rnd))
}

// Rotate replaces the node's WireGuard key now (`latch rotate`).
func (a *Agent) Rotate(ctx context.Context) (localapi.RotateResponse, error) {
	a.mu.Lock()
	st, s, refused, lastErr := a.st, a.sess, a.refused, a.lastErr
	a.mu.Unlock()
	switch {
	case st == nil:
		return localapi.RotateResponse{}, localapi.Errorf(http.StatusConflict, "not enrolled: run latch up first")
	case s == nil || s.client == nil:
		return localapi.RotateResponse{}, localapi.Errorf(http.StatusConflict, "latch is down: run latch up first")
	case refused:
		return localapi.RotateResponse{}, localapi.Errorf(http.StatusConflict, "the coordinator refuses this node: %s", lastErr)
	}
	old, next, err := a.rotate(ctx, s)
	if err != nil {
		var ae *control.APIError
		if errors.As(err, &ae) && ae.Status/100 == 4 {
			return localapi.RotateResponse{}, &localapi.Error{Status: ae.Status, Message: err.Error()}
		}
		return localapi.RotateResponse{}, &localapi.Error{Status: http.StatusBadGateway, Message: err.Error()}
	}
	return localapi.RotateResponse{OldKey: old, NewKey: next}, nil
}

// rotate replaces the WireGuard key: the pending key if a rotation was
// interrupted, else a new one saved as pending first; then the
// coordinator is told, and on its answer the key is committed and pushed
// to the data plane. A coordinator that refuses the key (taken, invalid)
// makes the pending key go, so the next attempt draws a new one.
func (a *Agent) rotate(ctx context.Context, s *session) (old, next wire.NodePublic, err error) {
	a.rotMu.Lock()
	defer a.rotMu.Unlock()
	st := a.state()
	if st == nil {
		return old, next, errors.New("rotating WireGuard key: not enrolled")
	}
	old = st.Identity.WireGuardKey
	k, ok, err := a.dir.LoadPendingWGKey()
	if err != nil {
		return old, next, err
	}
	if !ok {
		if k, err = wgtypes.GeneratePrivateKey(); err != nil {
			return old, next, fmt.Errorf("generating WireGuard key: %w", err)
		}
		if err := a.dir.SavePendingWGKey(k); err != nil {
			return old, next, err
		}
	}
	next = wire.NodePublic(k.PublicKey())
	if _, err := s.client.Rotate(ctx, next); err != nil {
		var ae *control.APIError
		if errors.As(err, &ae) && (ae.Status == http.StatusConflict || ae.Status == http.StatusBadRequest) {
			if derr := a.dir.DropPendingWGKey(); derr != nil {
				a.log.Warn("dropping refused WireGuard key", logErr, derr)
			}
		}
		return old, next, err
	}
	if err := a.dir.CommitWGKey(k); err != nil {
		// The coordinator has the key; the pending file keeps it, and the
		// next attempt commits it.
		return old, next, err
	}
	a.useWGKey(k)
	a.log.Info("rotated WireGuard key", "old", old.ShortString(), "new", next.ShortString())
	return old, next, nil
}

// useWGKey makes k the node's key in memory and on the data plane. The
// swap happens under engMu, so a netmap applied concurrently never pushes
// the old key after the new one (reconfig reads the key under engMu).
func (a *Agent) useWGKey(k wgtypes.Key) {
	a.engMu.Lock()
	defer a.engMu.Unlock()
	a.mu.Lock()
	if a.st != nil {
		next := *a.st
		next.WireGuardKey = k
		next.Identity.WireGuardKey = wire.NodePublic(k.PublicKey())
		a.st = &next
	}
	a.lastRotated = a.cfg.Now()
	a.changedLocked()
	a.mu.Unlock()
	if a.engine == nil || a.applied == nil {
		return
	}
	cfg := *a.applied
	cfg.PrivateKey = k
	if err := a.engine.Reconfig(cfg); err != nil {
		// applied keeps the old key, so the next netmap retries.
		a.log.Error("configuring the overlay with the rotated key", logErr, err)
		a.mu.Lock()
		a.engineErr, a.lastErr = err, err.Error()
		a.changedLocked()
		a.mu.Unlock()
		return
	}
	a.applied = &cfg
}

// lastRotation returns when the current key was set.
func (a *Agent) lastRotation() time.Time {
	a.mu.Lock()
	last := a.lastRotated
	a.mu.Unlock()
	if !last.IsZero() {
		return last
	}
	t, err := a.dir.WGKeyTime()
	if err != nil {
		a.log.Warn("reading the WireGuard key's age; counting from now", logErr, err)
		t = a.cfg.Now()
	}
	a.mu.Lock()
	if a.lastRotated.IsZero() {
		a.lastRotated = t
	}
	last = a.lastRotated
	a.mu.Unlock()
	return last
}

// rotateLoop first confirms a rotation a crash interrupted, then rotates
// the key every Config.KeyRotation (with jitter), retrying failures with
// backoff.
func (s *session) rotateLoop() {
	defer s.wg.Done()
	a := s.a
	attempt := 0
	for {
		_, pending, err := a.dir.LoadPendingWGKey()
		if err != nil {
			a.log.Error("not rotating WireGuard keys", logErr, err)
			a.setLastErr(s, err)
			<-s.ctx.Done()
			return
		}
		var (
			wait time.Duration
			last time.Time
		)
		switch {
		case attempt > 0:
			wait = a.cfg.Backoff.Delay(attempt - 1)
		case pending:
			wait = 0
		case a.cfg.KeyRotation < 0:
			<-s.ctx.Done()
			return
		default:
			last = a.lastRotation()
			wait = rotateAt(last, a.cfg.KeyRotation, a.cfg.Rand).Sub(a.cfg.Now())
		}
		if !s.sleep(wait) {
			return
		}
		if !last.IsZero() && !a.lastRotation().Equal(last) {
			continue // `latch rotate` ran meanwhile: the schedule restarts from it
		}
		if a.isRefused(s) {
			return
		}
		if pending {
			a.log.Info("confirming an interrupted WireGuard key rotation with the coordinator")
		}
		if _, _, err := a.rotate(s.ctx, s); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			attempt++
			a.log.Warn("rotating WireGuard key", logErr, err)
			a.setLastErr(s, err)
			continue
		}
		attempt = 0
	}
}
