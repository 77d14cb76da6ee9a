// Package expiry ends nodes whose key expiry passed.
//
// Agents drop an expired node (and an expired node drops every peer) on
// their own clock, from wire.Node.KeyExpiry, whatever the coordinator
// does. The Sweeper makes the coordinator agree at the same instant: it
// waits for the earliest key expiry among live nodes, marks the due nodes
// expired in the store (which bumps the netmap version and audits each
// as the system) and tells the netmap hub, so the expired nodes leave
// every netmap and get an empty one themselves.
package expiry

import (
	"context"
	"log/slog"
	"time"

	"github.com/latchnet/latch/coordinator/clock"
	"github.com/latchnet/latch/coordinator/store"
)

// maxWait bounds one wait, so a wall-clock jump delays an expiry by at
// most this long.
const maxWait = time.Minute

// retryWait is the pause after a store error.
const retryWait = time.Second

// Log keys.
const (
	logNode = "node"
	logErr  = "err"
)

// Store is what the Sweeper needs of the coordinator's store.
type Store interface {
	// ExpireNodes marks the nodes due at now expired and returns them.
	ExpireNodes(ctx context.Context, now time.Time) ([]store.Node, error)
	// NextNodeExpiry returns the earliest expiry of a node not yet
	// expired; false if there is none.
	NextNodeExpiry(ctx context.Context) (time.Time, bool, error)
}

// Config configures a Sweeper.
type Config struct {
	Store Store
	// Notify is called after nodes expired (the netmap changed).
	Notify func()
	// Clock defaults to the real clock.
	Clock  clock.Clock
	Logger *slog.Logger
}

// Sweeper expires nodes at their key expiry. Close stops it.
type Sweeper struct {
	cfg    Config
	kick   chan struct{} // capacity 1: re-read the next expiry
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
}

// Start starts a Sweeper. Nodes already past their expiry are expired at
// once.
func Start(cfg Config) *Sweeper {
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
	s := &Sweeper{cfg: cfg, kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go s.run(ctx)
	return s
}

// Kick tells the Sweeper that node expiries changed (a node enrolled or
// an admin set an expiry), so the earliest may be earlier now. It never
// blocks.
func (s *Sweeper) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Close stops the Sweeper and waits for it.
func (s *Sweeper) Close() {
	s.cancel()
	<-s.done
}

func (s *Sweeper) run(ctx context.Context) {
	defer close(s.done)
	for {
		wake := s.step(ctx)
		t := s.cfg.Clock.At(wake)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.kick:
			t.Stop()
		case <-t.C():
		}
	}
}

// step expires what is due and returns when to look again.
func (s *Sweeper) step(ctx context.Context) time.Time {
	now := s.cfg.Clock.Now()
	expired, err := s.cfg.Store.ExpireNodes(ctx, now)
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Logger.Error("expiring nodes", logErr, err)
		}
		return now.Add(retryWait)
	}
	for _, n := range expired {
		s.cfg.Logger.Info("node key expired", logNode, n.ID, "name", n.Name, "key_expiry", n.KeyExpiry)
	}
	if len(expired) > 0 {
		s.cfg.Notify()
	}
	next, ok, err := s.cfg.Store.NextNodeExpiry(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Logger.Error("reading next node expiry", logErr, err)
		}
		return now.Add(retryWait)
	}
	if !ok || next.Sub(now) > maxWait {
		return now.Add(maxWait)
	}
	return next
}
