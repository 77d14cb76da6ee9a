// Package expiry ends what expires at an instant: nodes whose key expiry
// passed (Start) and, through StartTask, anything else with a next expiry
// in the store (package grants uses it for access grants).
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

// Task is what a Sweeper keeps expiring: node keys here, access grants in
// package grants.
type Task struct {
	// What names the things for logs: "node keys".
	What string
	// Expire ends everything due at now and reports whether anything was
	// (the netmap changed).
	Expire func(ctx context.Context, now time.Time) (bool, error)
	// Next returns the earliest pending expiry; false if there is none.
	Next func(ctx context.Context) (time.Time, bool, error)
}

// Sweeper runs a Task at each next expiry. Close stops it.
type Sweeper struct {
	task   Task
	notify func()
	clock  clock.Clock
	log    *slog.Logger
	kick   chan struct{} // capacity 1: re-read the next expiry
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
}

// Start starts a Sweeper of node key expiries. Nodes already past their
// expiry are expired at once.
func Start(cfg Config) *Sweeper {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return StartTask(Task{
		What: "node keys",
		Expire: func(ctx context.Context, now time.Time) (bool, error) {
			expired, err := cfg.Store.ExpireNodes(ctx, now)
			for _, n := range expired {
				log.Info("node key expired", logNode, n.ID, "name", n.Name, "key_expiry", n.KeyExpiry)
			}
			return len(expired) > 0, err
		},
		Next: cfg.Store.NextNodeExpiry,
	}, cfg.Notify, cfg.Clock, log)
}

// StartTask starts a Sweeper of t: it runs t.Expire at once and then at
// each t.Next, calling notify (if set) whenever something expired. clk and
// log may be nil (the real clock, no logs).
func StartTask(t Task, notify func(), clk clock.Clock, log *slog.Logger) *Sweeper {
	if clk == nil {
		clk = clock.Real()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if notify == nil {
		notify = func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sweeper{task: t, notify: notify, clock: clk, log: log, kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go s.run(ctx)
	return s
}

// Kick tells the Sweeper that expiries changed (a node enrolled, an admin
// set an expiry, a grant was approved), so the earliest may be earlier
// now. It never blocks.
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
		t := s.clock.At(wake)
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
	now := s.clock.Now()
	expired, err := s.task.Expire(ctx, now)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("expiring "+s.task.What, logErr, err)
		}
		return now.Add(retryWait)
	}
	if expired {
		s.notify()
	}
	next, ok, err := s.task.Next(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("reading the next expiry of "+s.task.What, logErr, err)
		}
		return now.Add(retryWait)
	}
	if !ok || next.Sub(now) > maxWait {
		return now.Add(maxWait)
	}
	return next
}
