package overlay

import (
	"bytes"
	"time"

	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// kickDelay is how long a newly added peer may go without a completed
// handshake before the engine starts a fresh one. It is well under
// WireGuard's 5 s rekey timeout and well over a handshake's round trip.
const kickDelay = time.Second

// firstKick is when the lower key first checks a new peer: its initiation
// on adding the peer is lost when the other side did not know this node
// yet (the two learn of each other from their own netmaps, moments
// apart), and the other side, holding back, would start one only at
// kickDelay/2. It is well under kickDelay/2, so that the two do not cross.
const firstKick = 150 * time.Millisecond

// kickAttempts bounds the kicks of one new peer: the lower key kicks at
// 0.15, 1.15, 2.15, 3.15 and 4.15 s, the higher one at 0.5 s, until a
// handshake completed.
const kickAttempts = 5

// Why kicks exist: when a policy change makes two nodes peers, both add each
// other within moments. If each device sent a handshake initiation at once
// (turning on persistent keepalive sends one), the two would cross: each
// side consumes the other's initiation and answers it, which replaces its
// own pending initiation; each response then arrives at a side that no
// longer waits for one and is dropped. Both sides hold only a responder
// session, which may not send until the initiator does, so nothing moves
// until the 5 s retransmit timer fires.
//
// Crossed initiations can also end worse, in a session that works one way
// only. wireguard-go handles handshake messages on several goroutines, so
// the peer's initiation and its response to our own initiation, arriving
// together, may be handled at once: the response passes its state check,
// the initiation is consumed and answered meanwhile (which deletes the
// index our initiation carried), and then the response's keypair is set
// up anyway, under no index. Both sides record a completed handshake, so
// no kick follows; the peer's packets, addressed to the deleted index, are
// dropped without a word until this side, hearing nothing back, starts a
// new handshake after 15 s (KeepaliveTimeout + RekeyTimeout). It happened
// in e2e after an unquarantine: web's SYNs reached the API, whose SYN-ACKs
// never came back.
//
// So only one side initiates when a peer is added: the side with the lower
// public key turns persistent keepalive on at once. The side with the
// higher key adds the peer with its keepalive held back (heldKeepalive)
// and turns it on at its one kick, kickDelay/2 later: by then the lower
// key's initiation has been answered, or it arrived before this side knew
// the peer and was dropped, and this side's own initiation (the kick)
// starts the handshake. A side with a packet for the peer still initiates
// at once, so crossings become rare, not impossible. For those, and for
// lost initiations, the lower key starts a fresh handshake if none
// completed within firstKick of adding the peer (its first initiation
// most often dies at a side that did not know it yet, and the other side
// would wait until kickDelay/2), and again each kickDelay after.

// lowerKey reports whether self is the lower of the two keys, the side that
// initiates the first handshake with a new peer and kicks it.
func lowerKey(self, peer wire.NodePublic) bool { return bytes.Compare(self[:], peer[:]) < 0 }

// kickLater starts a goroutine that kicks the handshake with peer at the
// times above while the device has an endpoint for it but no completed
// handshake. Close cancels and waits for it. Called with e.mu held, on an
// engine with a device, for the peer's addition number seq (e.added); the
// goroutine ends once the peer was removed, whether or not it was added
// again since (that addition has kicks of its own).
//
// The higher key's one kick also turns on the peer's held keepalive.
func (e *Engine) kickLater(self, peer wire.NodePublic, seq uint64) {
	first, attempts := firstKick, kickAttempts
	if !lowerKey(self, peer) {
		first, attempts = kickDelay/2, 1
	}
	e.kicks.Add(1)
	go func() {
		defer e.kicks.Done()
		t := time.NewTimer(first)
		defer t.Stop()
		for i := range attempts {
			select {
			case <-e.stop:
				return
			case <-t.C:
			}
			kicked := e.kickIfStuck(peer, seq)
			if i == 0 {
				// After the kick, so that a keepalive turned on with
				// no session does not start a second initiation.
				e.releaseKeepalive(peer, seq)
			}
			if !kicked {
				return
			}
			t.Reset(kickDelay)
		}
	}()
}

// releaseKeepalive turns on the persistent keepalive held back for peer,
// if it still is. Should the device refuse, the peer is no longer held
// either, so the next Reconfig sets it.
func (e *Engine) releaseKeepalive(peer wire.NodePublic, seq uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	keepalive, ok := e.heldKeepalive[peer]
	if e.closed || !ok || e.added[peer] != seq {
		return
	}
	delete(e.heldKeepalive, peer)
	keepalive = keepalive.Truncate(time.Second)
	err := e.wg.ConfigureDevice(wgtypes.Config{Peers: []wgtypes.PeerConfig{{
		PublicKey:                   wgtypes.Key(peer),
		UpdateOnly:                  true,
		PersistentKeepaliveInterval: &keepalive,
	}}})
	if err != nil {
		e.log.Warn("turning on a new peer's persistent keepalive", logKeyPeer, peer.ShortString(), logKeyErr, err)
	}
}

// kickIfStuck starts a fresh handshake with peer if it is still the
// peer added as number seq, has an endpoint and no handshake has completed.
// It reports whether it kicked (so a later kick may still be needed).
func (e *Engine) kickIfStuck(peer wire.NodePublic, seq uint64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.added[peer] != seq {
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
