package filter

import "sync/atomic"

// Verdict says what happens to a packet.
type Verdict uint8

const (
	// Drop discards the packet. It is the zero value: a verdict nobody set
	// is a drop.
	Drop Verdict = iota
	// Accept lets the packet through.
	Accept
)

// String returns "drop" or "accept".
func (v Verdict) String() string {
	if v == Accept {
		return "accept"
	}
	return "drop"
}

// Reason says why a packet got its verdict. Every packet the filter sees
// gets exactly one reason, and each reason implies one Verdict.
type Reason uint8

// The reasons. Their String forms are stable: logs, metrics and flow records
// use them.
const (
	// reasonNone is never returned; it marks "no decision yet" inside the
	// filter, and its zero value is a drop.
	reasonNone Reason = iota

	// AcceptRule: an inbound packet that starts a flow matched a live rule.
	AcceptRule
	// AcceptEstablished: an inbound packet belongs to a known flow that is
	// still allowed.
	AcceptEstablished
	// AcceptRelated: an inbound ICMP error refers to a known flow.
	AcceptRelated
	// AcceptOutbound: an outbound packet; its flow state was recorded or
	// refreshed so that replies are admitted.
	AcceptOutbound
	// AcceptOutboundUntracked: an outbound packet that creates no state
	// (a protocol or message the filter does not track, a fragment, a TCP
	// segment of a connection the filter never saw open, or a flow a rule
	// change revoked).
	AcceptOutboundUntracked

	// DropNoRule: an inbound packet that starts a flow matched no rule.
	DropNoRule
	// DropExpired: an inbound packet matched only rules that have expired
	// on this node's clock.
	DropExpired
	// DropRevoked: an inbound packet belongs to a flow that a rule change
	// or a rule's expiry no longer allows.
	DropRevoked
	// DropNotLocal: an inbound packet is addressed to none of this node's
	// addresses.
	DropNotLocal
	// DropMalformed: the packet is truncated or its headers contradict
	// each other.
	DropMalformed
	// DropFragment: an inbound IP fragment. Fragments after the first carry
	// no ports, so they are refused rather than guessed at.
	DropFragment
	// DropIPv6ExtHeader: an inbound IPv6 packet with extension headers,
	// which could hide the real protocol and ports.
	DropIPv6ExtHeader

	numReasons
)

var reasonNames = [numReasons]string{
	reasonNone:              "none",
	AcceptRule:              "accept-rule",
	AcceptEstablished:       "accept-established",
	AcceptRelated:           "accept-related",
	AcceptOutbound:          "accept-outbound",
	AcceptOutboundUntracked: "accept-outbound-untracked",
	DropNoRule:              "drop-no-rule",
	DropExpired:             "drop-expired",
	DropRevoked:             "drop-revoked",
	DropNotLocal:            "drop-not-local",
	DropMalformed:           "drop-malformed",
	DropFragment:            "drop-fragment",
	DropIPv6ExtHeader:       "drop-ipv6-ext-header",
}

// String returns the reason's stable name, such as "drop-no-rule".
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Verdict returns the verdict the reason implies.
func (r Reason) Verdict() Verdict {
	if r >= AcceptRule && r <= AcceptOutboundUntracked {
		return Accept
	}
	return Drop
}

// Reasons returns every reason the filter can return, in a stable order,
// for exporting counters.
func Reasons() []Reason {
	out := make([]Reason, 0, numReasons-1)
	for r := reasonNone + 1; r < numReasons; r++ {
		out = append(out, r)
	}
	return out
}

// counterStripes spreads each reason's counter over several cache lines,
// so that wireguard-go's per-peer goroutines, counting the same reason for
// different peers, do not fight over one line. Benchmarked: a shared counter
// doubles the cost of an established-flow packet under parallel load.
const counterStripes = 8

// counters holds the per-reason counters, each stripe of each on its own
// cache line. Reason-major, so that counting a constant reason is a shift
// and an add.
type counters [numReasons][counterStripes]struct {
	n atomic.Uint64
	_ [56]byte
}

// stripeOf picks a stripe for a packet of the general path: any cheap mix
// of its addresses spreads peers, which get neighbouring addresses. (The
// fast path uses the remote address alone; only the spreading matters.)
func stripeOf(p *packet) uint { return uint(p.src.lo ^ p.dst.lo) }

// stripeOfBytes picks a stripe for packet b from a byte of its source
// address (IPv4 or IPv6), or 0 if b is too short to hold one.
func stripeOfBytes(b []byte) uint {
	if len(b) >= 24 && b[0]>>4 == 6 {
		return uint(b[23])
	}
	if len(b) >= 16 {
		return uint(b[15])
	}
	return 0
}

// add counts one packet with reason r in stripe stripe (mod counterStripes).
func (c *counters) add(stripe uint, r Reason) { c[r][stripe%counterStripes].n.Add(1) }

func (c *counters) get(r Reason) uint64 {
	if r >= numReasons {
		return 0
	}
	var n uint64
	for i := range c[r] {
		n += c[r][i].n.Load()
	}
	return n
}
