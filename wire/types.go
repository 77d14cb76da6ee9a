package wire

import (
	"net/netip"
	"time"
)

// NodeID identifies a node for its whole life. It is assigned by the
// coordinator at enrollment, never reused, and appears in the node's SPIFFE
// ID (spiffe://<trust-domain>/node/<id>).
type NodeID string

// Tag is a label on a node that policy rules name, always "tag:<name>".
type Tag string

// EnrollRequest is what an agent presents to join the network.
type EnrollRequest struct {
	// AuthKey is the full enrollment key as the admin handed it out.
	AuthKey string `json:"auth_key"`
	// Hostname is the node's self-reported host name; the coordinator
	// derives a unique DNS-safe Name from it.
	Hostname string `json:"hostname"`
	// Tags the node asks for. Each must be carried by the key; empty means
	// every tag of the key.
	Tags []Tag `json:"tags,omitempty"`
	// Ephemeral asks for a node that is removed when it goes away.
	Ephemeral bool `json:"ephemeral,omitempty"`
	// WireGuardKey is the node's WireGuard public key, generated locally.
	WireGuardKey NodePublic `json:"wireguard_key"`
	// CSR is a DER PKCS#10 request signed by the node's certificate key,
	// generated locally; it proves possession. Its subject is ignored.
	CSR []byte `json:"csr"`
	// Endpoints are underlay addresses where the node's WireGuard socket
	// may be reached, best first.
	Endpoints []netip.AddrPort `json:"endpoints,omitempty"`
	// Posture is the node's self-reported posture at enrollment.
	Posture *Posture `json:"posture,omitempty"`
	// IDToken, instead of AuthKey, is a workload identity (OIDC) token
	// issued by a CI system; the coordinator enrolls the node under the
	// first trust rule the token satisfies (see TrustRule). Exactly one of
	// AuthKey and IDToken is set.
	IDToken string `json:"id_token,omitempty"`
}

// EnrollResponse answers a successful enrollment.
type EnrollResponse struct {
	Node Node `json:"node"`
	// Certificate is the node's certificate, DER, valid for the key in the
	// CSR, with its SPIFFE ID as URI SAN.
	Certificate []byte `json:"certificate"`
	// CA is the DER certificate of the coordinator's CA (whose SHA-256
	// fingerprint the enrollment key carries).
	CA []byte `json:"ca"`
	// TrustDomain is the SPIFFE trust domain of this network.
	TrustDomain string `json:"trust_domain"`
	// NetmapKey is the coordinator's Ed25519 public key that signs every
	// netmap on the stream (see VerifyNetmap). The agent pins it with its
	// identity.
	NetmapKey []byte `json:"netmap_key,omitempty"`
}

// RenewRequest asks for a fresh node certificate before the current one
// expires. It is sent over mTLS with the current certificate.
type RenewRequest struct {
	CSR []byte `json:"csr"`
}

// RenewResponse carries the renewed certificate.
type RenewResponse struct {
	Certificate []byte `json:"certificate"`
}

// UpdateRequest reports what changed on the node. Nil fields are unchanged.
type UpdateRequest struct {
	Endpoints []netip.AddrPort `json:"endpoints,omitempty"`
	// Posture, when set, replaces the node's reported posture; the
	// coordinator re-evaluates the node's access at once.
	Posture *Posture `json:"posture,omitempty"`
}

// Node is what the coordinator tells about one node: to itself as Self, to
// peers allowed to know it as a Peer.
type Node struct {
	ID NodeID `json:"id"`
	// Name is unique in the network and DNS-safe.
	Name string     `json:"name"`
	Key  NodePublic `json:"key"`
	// Addresses are the node's overlay addresses: one IPv4 /32 in
	// 100.64.0.0/10 and one IPv6 /128 in the network's ULA /48.
	Addresses []netip.Prefix   `json:"addresses"`
	Endpoints []netip.AddrPort `json:"endpoints,omitempty"`
	Tags      []Tag            `json:"tags,omitempty"`
	Ephemeral bool             `json:"ephemeral,omitempty"`
	Created   time.Time        `json:"created"`
	// KeyExpiry is when the node's enrollment expires; zero means never.
	// From that instant every receiver drops the node on its own clock,
	// whether or not the coordinator is reachable, and a node whose own
	// key expired drops all of its peers.
	KeyExpiry time.Time `json:"key_expiry,omitzero"`
}

// Peer is a node as another node (the receiver) sees it.
type Peer struct {
	Node
	// Rules lists the IDs of the receiver's Rules that admit new flows from
	// this peer. Rules name identities, not addresses: the receiver admits
	// a flow when it comes from the overlay addresses of a peer whose Rules
	// hold a matching rule's ID. A node joining or changing therefore
	// changes only its own Peer entry at each receiver, never the rules.
	// Empty means the peer may be reached but may not start flows in.
	Rules []string `json:"rules,omitempty"`
}

// Proto is an IP protocol number (IANA).
type Proto uint8

// The protocols filter rules name.
const (
	ProtoICMP   Proto = 1
	ProtoTCP    Proto = 6
	ProtoUDP    Proto = 17
	ProtoICMPv6 Proto = 58
)

// PortRange is an inclusive range of ports; First <= Last, both >= 1.
// ICMP rules ignore ports.
type PortRange struct {
	First uint16 `json:"first"`
	Last  uint16 `json:"last"`
}

// FilterRule admits new inbound flows to the node that receives it. A
// packet matches when its source is an overlay address of a peer whose
// Peer.Rules hold ID (or is in Sources), its protocol is in Protocols, and
// (for TCP and UDP) its destination port is in Ports. There is no
// wildcard: no sources or empty Protocols match nothing, and empty Ports
// match no TCP or UDP packet (ICMP has no ports: an ICMP rule needs none).
type FilterRule struct {
	// ID names the policy rule or grant this came from, for verdict reasons
	// and for Peer.Rules. It is unique within one node's Rules.
	ID string `json:"id"`
	// Sources are extra source prefixes besides the peers naming this rule.
	// The coordinator leaves it empty; the agent fills it when it resolves
	// peers to addresses for its packet filter.
	Sources   []netip.Prefix `json:"sources,omitempty"`
	Protocols []Proto        `json:"protocols"`
	Ports     []PortRange    `json:"ports"`
	// Expires, when set, ends the rule on the agent's own clock.
	Expires time.Time `json:"expires,omitzero"`
}

// Netmap is everything one node is told: itself, the peers it may see and
// the rules that protect it. Peers hold only nodes some rule relates to Self.
type Netmap struct {
	// Version increases with every change the coordinator makes.
	Version uint64       `json:"version"`
	Self    Node         `json:"self"`
	Peers   []Peer       `json:"peers"`
	Rules   []FilterRule `json:"rules"`
}

// Delta changes a Netmap. Applying it to the map with Version PrevVersion
// yields the map with Version; an agent holding another version reconnects
// to get a full map.
type Delta struct {
	PrevVersion uint64 `json:"prev_version"`
	Version     uint64 `json:"version"`
	// Self is set when the node itself changed.
	Self *Node `json:"self,omitempty"`
	// Upsert adds peers or replaces them whole, by ID.
	Upsert []Peer `json:"upsert,omitempty"`
	// Remove drops peers by ID.
	Remove []NodeID `json:"remove,omitempty"`
	// Rules, when non-nil, replaces the rule set whole.
	Rules []FilterRule `json:"rules,omitempty"`
	// RulesChanged distinguishes "no change" from "now empty".
	RulesChanged bool `json:"rules_changed,omitempty"`
}

// Message types on the stream.
const (
	MsgNetmap    = "netmap"
	MsgDelta     = "delta"
	MsgKeepAlive = "keepalive"
)

// StreamMessage is one line of the agent's stream.
type StreamMessage struct {
	Type   string  `json:"type"`
	Netmap *Netmap `json:"netmap,omitempty"`
	Delta  *Delta  `json:"delta,omitempty"`
	// KeepAlive is the interval until the next message at the latest; the
	// agent treats the stream as dead after three of them pass in silence.
	KeepAlive time.Duration `json:"keepalive,omitempty"`
	// Signature, on netmap and delta messages, is the coordinator's
	// signature of the full netmap the receiver holds after this message
	// (the delta applied), bound to the receiver's node ID and the
	// version: see VerifyNetmap. An agent refuses a message without a
	// valid one.
	Signature []byte `json:"signature,omitempty"`
}
