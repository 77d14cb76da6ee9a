// Package grants ends just-in-time access grants when they expire.
//
// Agents enforce a grant's expiry on their own clock whatever the
// coordinator does; the Expirer makes the coordinator agree: at the
// earliest expiry among active grants it marks the due grants expired in
// the store (which bumps the netmap version) and tells the netmap hub, so
// the grants leave every netmap.
package grants

import (
	"context"
	"log/slog"
	"time"

	"github.com/latchnet/latch/coordinator/clock"
	"github.com/latchnet/latch/coordinator/store"
)

// maxWait bounds one wait, so a wall-clock jump delays expiry by at most
// this long.
const maxWait = time.Minute

// retryWait is the pause after a store error.
const retryWait = time.Second

// Config configures an Expirer.
type Config struct {
	Store store.Store
	// Notify is called after grants expired (the netmap changed).
	Notify func()
	// Clock defaults to the real clock.
	Clock  clock.Clock
	Logger *slog.Logger
}

// Expirer expires grants at their Expires. Close stops it.
type Expirer struct {
	cfg    Config
	kick   chan struct{} // capacity 1: re-read the next expiry
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
}

// Start starts an Expirer. Grants already past their expiry are expired
// at once.
func Start(cfg Config) *Expirer {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Notify == nil {
		cfg.Notify = func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Expirer{cfg: cfg, kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go e.run(ctx)
	return e
}

// Kick tells the Expirer that grants changed (one was approved), so the
// earliest expiry may be earlier now. It never blocks.
func (e *Expirer) Kick() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Close stops the Expirer and waits for it.
func (e *Expirer) Close() {
	e.cancel()
	<-e.done
}

func (e *Expirer) run(ctx context.Context) {
	defer close(e.done)
	for {
		wake := e.step(ctx)
		t := e.cfg.Clock.At(wake)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-e.kick:
			t.Stop()
		case <-t.C():
		}
	}
}

// step expires what is due and returns when to look again.
func (e *Expirer) step(ctx context.Context) time.Time {
	now := e.cfg.Clock.Now()
	expired, err := e.cfg.Store.ExpireGrants(ctx, now)
	if err != nil {
		if ctx.Err() == nil {
			e.cfg.Logger.Error("expiring grants", "err", err)
		}
		return now.Add(retryWait)
	}
	for _, g := range expired {
		e.cfg.Logger.Info("access grant expired", "grant", g.ID, "node", g.Src, "to", g.To, "expires", g.Expires)
	}
	if len(expired) > 0 {
		e.cfg.Notify()
	}
	next, ok, err := e.cfg.Store.NextGrantExpiry(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.cfg.Logger.Error("reading next grant expiry", "err", err)
		}
		return now.Add(retryWait)
	}
	if !ok || next.Sub(now) > maxWait {
		return now.Add(maxWait)
	}
	return next
}
