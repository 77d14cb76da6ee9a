package coordinator

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/netmap"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// Ephemeral nodes (CI runners, containers) are deleted as soon as they are
// gone, and every peer is told in the netmap version that deletes them:
//
//   - Clean exit: the agent calls wire.PathLeave (on `latch down` and on
//     SIGTERM/SIGINT); the API deletes the node at once (api/leave.go).
//   - The agent dies but its host lives (kill -9, OOM, container stopped):
//     the host's kernel closes the TCP connection, the netmap stream ends
//     at once, and the reaper below deletes the node EphemeralGrace later
//     (default 15 s), unless it came back meanwhile.
//   - The host vanishes silently (VM destroyed, network cut): the stream's
//     connection is declared dead by TCP (deadPeer*: keepalive probes after
//     5 s of silence and a 6 s user timeout on unacknowledged data, such
//     as the stream's own keepalive), at most Keepalive + ~6.2 s after the
//     last exchange (the user timeout is checked when a retransmission
//     timer fires: 0.2+0.4+0.8+1.6+3.2 s), typically less; the grace then
//     runs as above. At the defaults: 10 + 6.2 + 8 + 0.8 s, under 30 s.
//
// The grace lets an agent whose stream broke reconnect (its backoff starts
// at under a second). After a coordinator restart every agent must
// reconnect with a backoff that may have grown to a minute, so nodes last
// seen before the start get restartGrace instead.

// Dead-peer detection on API connections.
const (
	deadPeerIdle     = 5 * time.Second // silence before the first TCP keepalive probe
	deadPeerInterval = 5 * time.Second // between probes
	deadPeerProbes   = 3               // unanswered probes that end the connection
	deadPeerTimeout  = 6 * time.Second // TCP_USER_TIMEOUT: unacknowledged data or probes
)

// restartGrace is the grace, counted from the coordinator's start, of
// ephemeral nodes last seen before it: more than the agents' longest
// reconnect backoff (one minute).
const restartGrace = 90 * time.Second

// auditReapReason is the reason recorded when the reaper deletes a node.
const auditReapReason = "ephemeral node disconnected for longer than the grace"

// reapStore is what the reaper needs of the store.
type reapStore interface {
	Nodes(ctx context.Context) ([]store.Node, error)
	DeleteNode(ctx context.Context, id wire.NodeID, at time.Time) (store.Node, error)
}

// reapHub is what the reaper needs of the netmap hub.
type reapHub interface {
	Online(id wire.NodeID) bool
	Disconnect(id wire.NodeID, err error)
	Notify()
}

// reaper deletes ephemeral nodes that stayed disconnected longer than
// their grace.
type reaper struct {
	store   reapStore
	hub     reapHub
	grace   time.Duration
	started time.Time // the coordinator's start
	now     func() time.Time
	log     *slog.Logger
}

// reapInterval is how often the reaper looks: a tenth of the grace, within
// [250ms, 2s], so the removal bound is the grace plus at most 2 s.
func reapInterval(grace time.Duration) time.Duration {
	return min(max(grace/10, 250*time.Millisecond), 2*time.Second)
}

// deadline returns when ephemeral node n, offline, is deleted.
func (r *reaper) deadline(n store.Node) time.Time {
	if n.LastSeen.Before(r.started) {
		return r.started.Add(max(r.grace, restartGrace))
	}
	return n.LastSeen.Add(r.grace)
}

// run sweeps until ctx ends.
func (r *reaper) run(ctx context.Context) {
	t := time.NewTicker(reapInterval(r.grace))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.sweep(ctx)
	}
}

// sweep deletes every ephemeral node past its deadline and not online,
// each in its own audited transaction, and tells the hub once. It returns
// how many it deleted.
func (r *reaper) sweep(ctx context.Context) int {
	nodes, err := r.store.Nodes(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("listing nodes for ephemeral cleanup", "err", err)
		}
		return 0
	}
	now := r.now()
	deleted := 0
	for _, n := range nodes {
		// LastSeen is written when a stream ends, so an online node is
		// checked first: a node still streaming is never deleted.
		if !n.Ephemeral || now.Before(r.deadline(n)) || r.hub.Online(n.ID) {
			continue
		}
		actx := audit.With(ctx, audit.Entry{Time: now, Actor: audit.ActorSystem, Action: audit.NodeDelete,
			Target: audit.NodeActor(string(n.ID)), Summary: map[string]any{
				"name": n.Name, "reason": auditReapReason, "grace": r.grace.String(), "last_seen": n.LastSeen}})
		if _, err := r.store.DeleteNode(actx, n.ID, now); err != nil {
			if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
				r.log.Warn("deleting ephemeral node", "node", n.ID, "err", err)
			}
			continue
		}
		// A stream that opened in the meantime ends here.
		r.hub.Disconnect(n.ID, netmap.ErrNodeDeleted)
		deleted++
		r.log.Info("deleted ephemeral node", "node", n.ID, "name", n.Name, "last_seen", n.LastSeen)
	}
	if deleted > 0 {
		r.hub.Notify()
	}
	return deleted
}

// deadPeerListener sets dead-peer detection on every accepted TCP
// connection (see the constants above).
type deadPeerListener struct{ net.Listener }

func (l deadPeerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: deadPeerIdle, Interval: deadPeerInterval, Count: deadPeerProbes})
		setUserTimeout(tc, deadPeerTimeout)
	}
	return c, nil
}
