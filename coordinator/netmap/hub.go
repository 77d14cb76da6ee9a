package netmap

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/latchnet/latch/wire"
)

// Reasons a Hub ends a subscription (see Subscription.Err).
var (
	ErrNodeDeleted  = errors.New("node deleted")
	ErrSlow         = errors.New("subscriber too slow: queue overflowed")
	ErrReplaced     = errors.New("replaced by a newer stream of the same node")
	ErrHubClosed    = errors.New("coordinator shutting down")
	ErrUnknownNode  = errors.New("unknown node")
	errUnsubscribed = errors.New("unsubscribed")
)

// Source provides consistent snapshots of the network.
type Source interface {
	// Snapshot returns the network at its current version.
	Snapshot(ctx context.Context) (*Snapshot, error)
}

// HubConfig configures a Hub.
type HubConfig struct {
	Source Source
	// Computer defaults to a new PolicyComputer. The Hub owns it.
	Computer Computer
	// QueueLen bounds each subscriber's queue of unsent messages.
	// Default 16.
	QueueLen int
	// SigningKey signs every netmap and delta sent (see
	// wire.VerifyNetmap). Nil sends them unsigned, which agents refuse;
	// only tests of the fan-out itself leave it out.
	SigningKey ed25519.PrivateKey
	Logger     *slog.Logger
}

// Hub fans netmap changes out to subscribed nodes.
//
// Call Notify after every committed change. Changes are coalesced: the
// Hub's goroutine loads a fresh snapshot and fans it out, so a burst of
// changes costs one recomputation.
type Hub struct {
	src      Source
	comp     Computer
	queueLen int
	key      ed25519.PrivateKey // nil: messages go unsigned
	log      *slog.Logger

	trigger chan struct{} // capacity 1: a pending refresh
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{} // closed when run returns

	mu   sync.Mutex
	snap *Snapshot // guarded by mu; latest applied, nil before the first
	// notified counts Notify calls; loaded is the count a snapshot
	// applied since was read after. loaded < notified: a change was
	// notified and not yet loaded. Both guarded by mu.
	notified, loaded uint64
	subs             map[wire.NodeID]*Subscription // guarded by mu
	closed           bool                          // guarded by mu
}

// NewHub starts a Hub. Close stops it.
func NewHub(cfg HubConfig) *Hub {
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Computer == nil {
		cfg.Computer = NewPolicyComputer()
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		src:      cfg.Source,
		comp:     cfg.Computer,
		queueLen: cfg.QueueLen,
		key:      cfg.SigningKey,
		log:      cfg.Logger,
		trigger:  make(chan struct{}, 1),
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		subs:     make(map[wire.NodeID]*Subscription),
	}
	go h.run()
	return h
}

// Notify tells the hub that the network changed. It never blocks.
func (h *Hub) Notify() {
	h.mu.Lock()
	h.notified++
	h.mu.Unlock()
	select {
	case h.trigger <- struct{}{}:
	default: // a refresh is already pending; it will see this change
	}
}

func (h *Hub) run() {
	defer close(h.done)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.trigger:
		case <-retry.C:
		}
		h.mu.Lock()
		gen := h.notified
		h.mu.Unlock()
		snap, err := h.src.Snapshot(h.ctx)
		if err != nil {
			if h.ctx.Err() != nil {
				return
			}
			h.log.Error("loading netmap snapshot", "err", err)
			retry.Reset(time.Second)
			continue
		}
		h.mu.Lock()
		h.applyLocked(snap)
		h.loaded = max(h.loaded, gen)
		h.mu.Unlock()
	}
}

// applyLocked makes snap current, unless a newer one already is, and
// sends each subscriber whose netmap it may change what changed for it.
// Subscribers the computer reports unaffected get nothing and cost
// nothing; those affected in a few peer entries only get those entries
// checked.
func (h *Hub) applyLocked(snap *Snapshot) {
	if h.closed || h.snap != nil && snap.Version <= h.snap.Version {
		return
	}
	h.snap = snap
	for _, ch := range h.comp.Update(snap) {
		sub := h.subs[ch.Node]
		if sub == nil {
			continue
		}
		var d *wire.Delta
		if ch.Full {
			nm, ok := h.comp.Netmap(ch.Node)
			if !ok {
				h.endLocked(sub, ErrNodeDeleted)
				continue
			}
			d = sub.last.update(nm)
		} else {
			d = sub.last.patch(snap.Version, ch.Peers, func(p wire.NodeID) (wire.Peer, bool) { return h.comp.Peer(ch.Node, p) })
		}
		if d != nil {
			h.sendLocked(sub, wire.StreamMessage{Type: wire.MsgDelta, Delta: d, Signature: h.signLocked(sub)})
		}
	}
}

// signLocked signs the netmap sub holds once it has received everything
// queued so far, or returns nil without a signing key.
func (h *Hub) signLocked(sub *Subscription) []byte {
	if h.key == nil {
		return nil
	}
	return wire.SignDigest(h.key, sub.last.digest(sub.id))
}

// NetmapKey returns the public key that verifies this hub's netmaps, or
// nil if it signs none (or h is nil).
func (h *Hub) NetmapKey() ed25519.PublicKey {
	if h == nil || h.key == nil {
		return nil
	}
	return h.key.Public().(ed25519.PublicKey)
}

// sendLocked queues msg for sub, or ends sub if its queue is full.
func (h *Hub) sendLocked(sub *Subscription, msg wire.StreamMessage) {
	select {
	case sub.ch <- msg:
	default:
		h.log.Warn("dropping slow netmap subscriber", "node", sub.id)
		h.endLocked(sub, ErrSlow)
	}
}

// endLocked ends sub with reason err.
func (h *Hub) endLocked(sub *Subscription, err error) {
	if sub.err != nil {
		return
	}
	sub.err = err
	close(sub.ch)
	if h.subs[sub.id] == sub {
		delete(h.subs, sub.id)
	}
}

// Subscribe starts the netmap stream of node id. The subscription's first
// message is the node's full netmap. A node has at most one subscription:
// a new one ends the previous with ErrReplaced. It fails with
// ErrUnknownNode if the node does not exist.
func (h *Hub) Subscribe(ctx context.Context, id wire.NodeID) (*Subscription, error) {
	h.mu.Lock()
	// Until a snapshot read after the last Notify is applied, the current
	// one may miss a change (the node itself may have just enrolled).
	fresh := h.snap != nil && h.loaded == h.notified
	if fresh {
		_, fresh = h.snap.Node(id)
	}
	gen := h.notified
	h.mu.Unlock()
	var snap *Snapshot
	if !fresh {
		// The node may have just enrolled; make sure we know it.
		var err error
		if snap, err = h.src.Snapshot(ctx); err != nil {
			return nil, err
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrHubClosed
	}
	if snap != nil {
		h.applyLocked(snap)
		h.loaded = max(h.loaded, gen)
	}
	if h.snap == nil {
		return nil, ErrUnknownNode
	}
	nm, ok := h.comp.Netmap(id)
	if !ok {
		return nil, ErrUnknownNode
	}
	if old := h.subs[id]; old != nil {
		h.endLocked(old, ErrReplaced)
	}
	sub := &Subscription{hub: h, id: id, ch: make(chan wire.StreamMessage, h.queueLen), last: newState(nm)}
	sub.ch <- wire.StreamMessage{Type: wire.MsgNetmap, Netmap: nm, Signature: h.signLocked(sub)}
	h.subs[id] = sub
	return sub, nil
}

// Version returns the version of the newest snapshot the hub fanned out:
// every live subscription has been sent (queued) a netmap at or past it,
// and a subscription that fails to deliver it ends. 0 before the first.
func (h *Hub) Version() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.snap == nil {
		return 0
	}
	return h.snap.Version
}

// Online reports whether node id has a subscription.
func (h *Hub) Online(id wire.NodeID) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.subs[id] != nil
}

// Disconnect ends node id's subscription, if any, with reason err.
func (h *Hub) Disconnect(id wire.NodeID, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sub := h.subs[id]; sub != nil {
		h.endLocked(sub, err)
	}
}

// Close stops the hub and ends every subscription with ErrHubClosed.
func (h *Hub) Close() {
	h.cancel()
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, sub := range h.subs {
		h.endLocked(sub, ErrHubClosed)
	}
}

// Subscription is one node's netmap stream.
type Subscription struct {
	hub *Hub
	id  wire.NodeID
	ch  chan wire.StreamMessage // closed by the hub (under hub.mu) when the subscription ends
	// last is the netmap the subscriber has after applying everything
	// queued so far. Guarded by hub.mu.
	last *state
	err  error // guarded by hub.mu; set once when ch is closed
}

// Messages returns the subscription's messages: a full netmap, then
// deltas. It is closed when the subscription ends; Err says why.
func (s *Subscription) Messages() <-chan wire.StreamMessage { return s.ch }

// Err returns why the subscription ended, or nil while it runs.
func (s *Subscription) Err() error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.err
}

// Close ends the subscription. It is safe to call more than once.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.endLocked(s, errUnsubscribed)
}
