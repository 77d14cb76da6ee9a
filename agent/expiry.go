package agent

// Node key expiry on the agent's own clock. Every node in a netmap may
// carry a KeyExpiry; from that instant the agent treats the node as gone:
// a peer whose key expired leaves the WireGuard configuration and the
// packet filter's sources (so its established flows are cut), and when
// the node's own key expired the agent drops every peer. This happens
// whether or not the coordinator is reachable, so a coordinator outage
// cannot extend anyone's access: a session loop holds a timer for the
// next expiry, re-armed whenever the netmap changes, and re-applies the
// netmap when it fires. The netmap itself is kept as received (it is the
// signed, cached copy); only what reaches the data plane and Status is
// filtered.

import (
	"time"

	"github.com/latchnet/latch/wire"
)

// expiryRecheck caps one sleep of the expiry timer. The timer runs on the
// monotonic clock while expiries are wall-clock instants; waking at least
// this often catches a wall clock that was stepped forward.
const expiryRecheck = 30 * time.Second

// TimerFunc starts a one-shot timer: c receives once, d from now; stop
// stops it and reports whether it had not fired yet. Config.Timer lets
// tests drive expiry with a fake clock.
type TimerFunc func(d time.Duration) (c <-chan time.Time, stop func() bool)

func realTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// keyExpired reports whether a key expiring at expiry has expired at now;
// the zero time never expires.
func keyExpired(expiry, now time.Time) bool {
	return !expiry.IsZero() && !now.Before(expiry)
}

// activeNetmap returns nm as the data plane may use it at now: without
// the peers whose key expired, and with no peers and no rules at all once
// Self's key expired. It returns nm itself when nothing expired, and never
// modifies it. next is the earliest expiry still ahead (Self's or a
// remaining peer's), zero if none.
func activeNetmap(nm *wire.Netmap, now time.Time) (active *wire.Netmap, next time.Time) {
	if nm == nil {
		return nil, time.Time{}
	}
	if keyExpired(nm.Self.KeyExpiry, now) {
		out := *nm
		out.Peers, out.Rules = []wire.Peer{}, nil
		return &out, time.Time{}
	}
	ahead := func(t time.Time) {
		if !t.IsZero() && t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	ahead(nm.Self.KeyExpiry)
	var keep []wire.Peer
	for i, p := range nm.Peers {
		if !keyExpired(p.KeyExpiry, now) {
			ahead(p.KeyExpiry)
			if keep != nil {
				keep = append(keep, p)
			}
			continue
		}
		if keep == nil {
			keep = make([]wire.Peer, i, len(nm.Peers))
			copy(keep, nm.Peers[:i])
		}
	}
	if keep == nil {
		return nm, next
	}
	out := *nm
	out.Peers = keep
	return &out, next
}

func (s *session) kickExpiry() {
	select {
	case s.expiryKick <- struct{}{}:
	default:
	}
}

// expiryLoop sleeps until the next key expiry of the current netmap and
// then re-applies the netmap, so the expired node leaves the data plane
// at that instant. Every applied netmap re-arms it.
func (s *session) expiryLoop() {
	defer s.wg.Done()
	a := s.a
	for {
		a.mu.Lock()
		next := a.nextExpiry
		a.mu.Unlock()
		var fire <-chan time.Time
		stop := func() bool { return false }
		if !next.IsZero() {
			d := max(min(next.Sub(a.cfg.Now()), expiryRecheck), 0)
			fire, stop = a.cfg.Timer(d)
		}
		select {
		case <-s.ctx.Done():
			stop()
			return
		case <-s.expiryKick:
			stop()
		case <-fire:
			a.enforceExpiry(s)
		}
	}
}

// enforceExpiry re-applies the current netmap at the current time.
func (a *Agent) enforceExpiry(s *session) {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	a.mu.Lock()
	st, nm, current := a.st, a.netmap, a.sess == s
	a.mu.Unlock()
	if !current || st == nil || nm == nil {
		return
	}
	now := a.cfg.Now()
	active, next := activeNetmap(nm, now)
	cfg := ConfigFromNetmap(active, st.WireGuardKey, a.cfg.ListenPort)
	err := a.reconfig(st, &cfg, nm.Version)
	a.mu.Lock()
	if a.sess == s {
		a.nextExpiry, a.engineErr = next, err
		if err != nil {
			a.lastErr = err.Error()
		}
		a.changedLocked()
	}
	a.mu.Unlock()
	if err != nil {
		a.log.Error("applying key expiry", logVersion, nm.Version, logErr, err)
		return
	}
	a.logExpired(nm, now)
}

// logExpired says which nodes of nm have expired at now.
func (a *Agent) logExpired(nm *wire.Netmap, now time.Time) {
	if keyExpired(nm.Self.KeyExpiry, now) {
		a.log.Warn("this node's key expired; dropped every peer", logExpires, nm.Self.KeyExpiry.UTC().Format(time.RFC3339))
		return
	}
	for _, p := range nm.Peers {
		if keyExpired(p.KeyExpiry, now) {
			a.log.Info("dropped peer whose node key expired", logName, p.Name, logNode, p.ID, logExpires, p.KeyExpiry.UTC().Format(time.RFC3339))
		}
	}
}
