package overlay

import (
	"bytes"
	"time"

	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/device"
)

// kickDelay is how long a newly added peer may go without a completed
// handshake before the engine starts a fresh one. It is well under
// WireGuard's 5 s rekey timeout and well over a handshake's round trip.
const kickDelay = time.Second

// kickAttempts bounds the kicks of one new peer: the lower key kicks at
// 1, 2, 3 and 4 s, the higher one at 2.5 s, until a handshake completed.
const kickAttempts = 4

// Why kicks exist: when a policy change makes two nodes peers, both add each
// other within moments, and each device sends a handshake initiation at once
// (turning on persistent keepalive sends one). If the two initiations cross,
// each side consumes the other's initiation and answers it, which replaces
// its own pending initiation; each response then arrives at a side that no
// longer waits for one and is dropped. Both sides now hold only a responder
// session, which may not send until the initiator does, so nothing moves
// until the 5 s retransmit timer fires. To break the tie, the side with the
// lower public key starts a fresh handshake if none completed within
// kickDelay of adding the peer, and again each kickDelay after (a kick can
// cross a late initiation too); the side with the higher key kicks once,
// half-way between two of those, in case its own view is the stuck one.

// kickLater starts a goroutine that kicks the handshake with peer at the
// times above while the device has an endpoint for it but no completed
// handshake. Close cancels and waits for it. Called with e.mu held, on an
// engine with a device.
func (e *Engine) kickLater(self, peer wire.NodePublic) {
	first, attempts := kickDelay, kickAttempts
	if bytes.Compare(self[:], peer[:]) >= 0 {
		first, attempts = kickDelay*5/2, 1
	}
	e.kicks.Add(1)
	go func() {
		defer e.kicks.Done()
		t := time.NewTimer(first)
		defer t.Stop()
		for range attempts {
			select {
			case <-e.stop:
				return
			case <-t.C:
			}
			if !e.kickIfStuck(peer) {
				return
			}
			t.Reset(kickDelay)
		}
	}()
}

// kickIfStuck starts a fresh handshake with peer if it has an endpoint and
// no handshake has completed. It reports whether it kicked (so a later
// kick may still be needed).
func (e *Engine) kickIfStuck(peer wire.NodePublic) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	d, err := e.wg.Device()
	if err != nil {
		e.log.Warn("reading device to check a new peer's handshake", logKeyPeer, peer.ShortString(), "err", err)
		return false
	}
	for _, p := range d.Peers {
		if wire.NodePublic(p.PublicKey) != peer {
			continue
		}
		if p.Endpoint == nil || p.LastHandshakeTime.Unix() > 0 {
			return false
		}
		wp := e.dev.LookupPeer(device.NoisePublicKey(peer))
		if wp == nil {
			return false
		}
		e.log.Debug("no handshake with new peer yet; starting a fresh one", logKeyPeer, peer.ShortString())
		// Forget the half-made handshake (and its rate limit), then send
		// a keepalive, which needs a session and so initiates one.
		wp.ExpireCurrentKeypairs()
		wp.SendKeepalive()
		return true
	}
	return false
}
