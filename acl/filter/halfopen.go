package filter

// Half-open inbound TCP connections. An inbound SYN that a rule admits
// creates no state at all: it costs a rule match and nothing else, and
// SYNs that nobody answers never evict flows in use. The connection gets
// its flow entry when it shows that it is real, each time only if the
// rules in force then admit it:
//
//   - this node answers (its SYN-ACK): outLocked matches the rules for the
//     remote side's direction again and records the flow as one the remote
//     side started, answered;
//   - the remote side sends anything but a SYN (newInbound).
//
// So verdicts come from the current rules alone until the entry exists,
// and a rule change between a SYN and the next packet takes effect at that
// packet. The price is in the reasons: a retransmitted SYN is AcceptRule
// like the first, and a connection whose rule went away before it was
// answered is DropNoRule (or DropExpired), not DropRevoked, since nothing
// remembers that it had been admitted.

// pureSYN reports whether TCP flags fl open a connection: SYN without ACK
// or RST.
func pureSYN(fl uint8) bool { return fl&(tcpSYN|tcpACK|tcpRST) == tcpSYN }

// synAck reports whether TCP flags fl answer a connection's SYN: SYN and
// ACK without RST.
func synAck(fl uint8) bool { return fl&(tcpSYN|tcpACK|tcpRST) == tcpSYN|tcpACK }

// newInbound decides about an inbound packet of a tracked kind k (TCP flags
// tcpFlags) whose flow has no entry, given the rules' verdict r about it.
// It returns the packet's reason, which is r, and whether a flow entry
// must be made for it (with flagInbound and tcpFlagsIn(tcpFlags)): when
// the rules admit it and it is neither a pure SYN nor a reset.
func newInbound(k kind, tcpFlags uint8, r Reason) (Reason, bool) {
	if k != kindTCP {
		return r, r == AcceptRule
	}
	return r, r == AcceptRule && !pureSYN(tcpFlags) && tcpFlags&tcpRST == 0
}
