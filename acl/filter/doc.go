// Package filter is a Latch node's packet filter: it decides, for every
// packet entering the node through the overlay, whether it may pass, and
// records the flows the node itself starts so that their replies do.
//
// Inbound is default deny. An inbound packet passes only if it belongs to a
// flow this node started, or to a flow a rule admitted and the current rules
// still admit, or if it starts a flow that a live rule admits. Rules come
// from the coordinator as wire.FilterRule: sources, protocols, destination
// ports and an optional expiry on this node's own clock. Ports matter for
// TCP and UDP alone and are never a wildcard: a rule without ports admits
// none of those two, while a rule for ICMP (and ICMPv6) without ports
// admits ICMP. Outbound packets always pass; they record flow state.
//
// Parsing fails closed: truncated or contradictory headers, IP fragments
// and IPv6 extension headers are dropped before any rule sees them, and a
// protocol whose ports are not parsed never matches a port.
//
// Rule changes are atomic and take effect on established flows too: a flow
// the remote side started is checked against every new rule set (and again
// when the rule that admitted it expires) before its next packet passes, so
// revoking access stops a connection in the middle.
//
// The hot path does not allocate, and the clock is read once per batch
// (Now) rather than per packet. Every verdict comes with a Reason, and every
// Reason is counted. The data plane (overlay's TUN wrapper) hands the filter
// whole batches, RunInBatch and RunOutBatch, which give every packet the
// verdict and reason RunInAt and RunOutAt would and add a batch's counts
// to the counters once, when it returns.
//
// # Design and costs
//
// Established flows are read without a lock. The flow table is an
// open-addressing index of slot words over an array of one-cache-line
// entries, in up to 64 shards. A reader hashes the packet's key (IPv4: one
// 128-bit multiply), loads the home slot word (a tag from the hash, the
// entry's index and its incarnation), compares the key words, reads the
// entry's state word and last-seen time, and trusts all that only if the
// slot still holds the same word: an entry freed and reused meanwhile has a
// new incarnation. The state word packs the flow's flags, the low 32 bits of
// the rule-set generation it was last checked against and the rule whose
// end it waits for, so one load gives a consistent picture; a packet passes
// on it if the flags need no change, the generation is the current one, and
// that rule has not ended. The last-seen time is written only when it is a
// millisecond old (the tick), so a busy flow costs no writes and no cache
// line bounces between the goroutines that see its two directions; idle
// timeouts hold to within the tick. Anything else - new flows (but for
// inbound TCP SYNs, see below), flag changes, rule changes, tick
// refreshes - takes the shard's lock, where the table
// keeps its LRU list: eviction happens only when a full shard takes a new
// flow. A miss proves a flow absent only if the home slot is empty or the
// shard's seq shows that no removal shifted keys during the walk; else the
// locked path looks again. RunInAt and RunOutAt parse IPv4 TCP and UDP
// without options in registers (FuzzFastPathAgrees holds them to the
// general parser and path); IPv6 TCP and UDP take a shorter parser; the
// rest goes through the general one.
//
// New flows are matched by source first. Rules mostly name single
// addresses (the agent resolves each peer to its overlay /32 and /128), so
// those live in a hash table whose entries already include the rules of
// any wider prefix covering them; wider prefixes become disjoint address
// intervals, found through a table on the top address bits and a short
// search. Either gives a list of rules (a single rule is named directly),
// and each rule's protocol bits and first port range sit at its front.
// A flow's state is created only once the rules admit it.
//
// An inbound TCP SYN that the rules admit creates no flow entry either,
// and writes nothing at all: the connection gets its entry when this node
// answers (its SYN-ACK, matched against the rules for the remote side's
// direction) or the remote side sends anything but a SYN - each time only
// if the rules in force admit it (halfopen.go). So a connection's first
// packet costs a rule match and no lock, no atomic operation and no
// eviction, and SYNs nobody answers never evict flows in use. The price
// is in two reasons: a retransmitted SYN is AcceptRule like the first one,
// and a connection whose rule went away before it was answered is
// DropNoRule rather than DropRevoked. (An earlier version noted admitted
// SYNs in a small lock-free table to keep those reasons; its one atomic
// store per SYN cost about a quarter of a new flow on the batch path.)
//
// Batches (batch.go) run the IPv4 fast path written out in the batch's
// loop, so that a packet passing on it makes no call, and count reasons
// in a local array: a packet that passes on the unlocked path, and a new
// inbound SYN, write no shared memory at all. Counts are exact between
// batches; a rule change takes effect from the next packet looked at, as
// for RunInAt. TestBatchAgreesWithPerPacket and FuzzBatchAgrees hold the
// batch path to the per-packet one, reason for reason and count for count.
//
// Costs on the development machine (2 vCPU AMD EPYC VM, Go 1.26; go test
// -run x -bench 'RunIn|RunOut' -benchmem ./acl/filter; medians of 10
// runs on 2026-11-22, with the host busier than usual: the same runs gave
// the version before about 8% more than it had on a quiet host; every
// case 0 allocations; the rule set has 1,277 source prefixes, 128 of them
// /24, over 32 rules with one port each). Per packet, in batches of 128
// as the data plane calls the filter (RunInBatch, RunOutBatch), and for
// one packet per call (RunInAt, RunOutAt) in parentheses:
//
//	established flow (IPv4 TCP, this node started it)      ~9.2 ns (10.5)
//	established flow, 8 flows interleaved in the batch     ~9.5 ns
//	established flow a rule admitted                      ~10.9 ns (11.6)
//	established flow, two goroutines                       ~4.5 ns (5.2)
//	outbound packet of a known flow                        ~9.1 ns (10.3)
//	new flow (SYN), distinct 5-tuples, table with room    ~26.7 ns (30.6)
//	no match                                              ~15.6 ns (18.7)
//	no match, known source, port no rule admits           ~14.7 ns (16.4)
//	new flow (SYN), one source, ports counting up               (25.7)
//	new flow (SYN), full table                                  (54.7)
//	handshake: SYN in, SYN-ACK out (makes the entry)           (119)
//	handshake into a full table (evicts)                       (228)
//
// The per-packet calls cost more mostly because each packet adds one to a
// shared reason counter, a serializing atomic operation; a batch adds its
// counts once. What remains expensive is a flow entry: the shard lock and
// its release, atomic stores of the key words and the slot word (readers
// without the lock need them), and with a full table the evicted entry
// and its LRU neighbours, cold in the cache. A new flow that is not a TCP
// SYN (UDP, ICMP echo, a TCP segment of a connection never seen) makes
// its entry on its first packet.
package filter
