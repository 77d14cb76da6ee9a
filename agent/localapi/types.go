// Package localapi is the agent's HTTP+JSON API on a unix socket, used by
// the latch CLI: the request and answer types, a server over a Backend
// (the agent), a client, and a listener that replaces stale sockets.
//
// Routes (all under the socket, no authentication beyond its 0600 mode):
//
//	POST /v1/up      UpRequest   -> UpResponse
//	POST /v1/down                -> 204
//	GET  /v1/status              -> Status
//	POST /v1/ping    PingRequest -> application/x-ndjson of PingEvent
//	POST /v1/access       wire.NodeAccessRequest -> wire.AccessRequest
//	GET  /v1/access/{id}  -> wire.AccessRequest (one of this node's own)
//	POST /v1/rotate              -> RotateResponse
//
// Failures answer {"error": "one line"} with a 4xx or 5xx status.
//
// The package imports nothing of the agent, so the CLI links only this.
package localapi

import (
	"net/netip"
	"time"

	"github.com/latchnet/latch/wire"
)

// Route paths.
const (
	PathUp     = "/v1/up"
	PathDown   = "/v1/down"
	PathStatus = "/v1/status"
	PathPing   = "/v1/ping"
	// PathAccess asks the coordinator, over the node's own mutual TLS
	// identity, for just-in-time access from this node.
	PathAccess = "/v1/access"
)

// UpRequest brings the node up, enrolling it first when it has no
// identity (or when an AuthKey is given for another coordinator, or after
// the coordinator refused the current identity).
type UpRequest struct {
	// Coordinator is the coordinator URL; empty means the enrolled one.
	Coordinator string `json:"coordinator,omitempty"`
	// AuthKey is the enrollment key. It is never logged or echoed.
	AuthKey string `json:"auth_key,omitempty"`
	// IDToken, instead of AuthKey, is a workload identity (OIDC) token
	// to enroll with; CAFingerprint ("sha256:<hex>") then pins the
	// coordinator's CA. The token is never logged or echoed.
	IDToken       string     `json:"id_token,omitempty"`
	CAFingerprint string     `json:"ca_fingerprint,omitempty"`
	Hostname      string     `json:"hostname,omitempty"`
	Tags          []wire.Tag `json:"tags,omitempty"`
	Ephemeral     bool       `json:"ephemeral,omitempty"`
	// Timeout bounds the wait for the first netmap; zero means 30s.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// UpResponse tells who the node is once it has its netmap.
type UpResponse struct {
	NodeID    wire.NodeID    `json:"node_id"`
	Name      string         `json:"name"`
	Addresses []netip.Prefix `json:"addresses"`
	// Enrolled is true when this call enrolled the node.
	Enrolled bool `json:"enrolled"`
}

// States of the agent, in Status.State.
const (
	// StateNeedsLogin: no identity; `latch up --auth-key` enrolls.
	StateNeedsLogin = "needs-login"
	// StateStopped: enrolled, brought down by `latch down`.
	StateStopped = "stopped"
	// StateConnecting: up, data plane running from the cached netmap (if
	// any), no stream to the coordinator at the moment.
	StateConnecting = "connecting"
	// StateConnected: up, holding the coordinator's stream.
	StateConnected = "connected"
	// StateRefused: the coordinator refuses this node (deleted, or its
	// certificate expired); the agent stopped retrying. State is kept.
	StateRefused = "refused"
)

// Status is the agent's view of itself and its peers.
type Status struct {
	State       string `json:"state"`
	Coordinator string `json:"coordinator,omitempty"`
	// LastError is the most recent control or data plane error, one line.
	LastError     string    `json:"last_error,omitempty"`
	Self          *Node     `json:"self,omitempty"`
	NetmapVersion uint64    `json:"netmap_version,omitempty"`
	CertExpires   time.Time `json:"cert_expires,omitzero"`
	Interface     string    `json:"interface,omitempty"`
	// Rules are the netmap's inbound rules (without resolved sources):
	// what may open flows into this node, and until when.
	Rules []wire.FilterRule `json:"rules,omitempty"`
	// KeyExpiry is when this node's key expires; zero means never.
	KeyExpiry time.Time `json:"key_expiry,omitzero"`
	// KeyExpired is set once KeyExpiry passed on the agent's clock: the
	// agent then keeps no peers (see KeyExpiredMessage).
	KeyExpired bool `json:"key_expired,omitempty"`
	// Posture is the host posture the agent last read; nil until read.
	Posture *wire.Posture `json:"posture,omitempty"`
	// Peers are the peers the data plane holds; a peer whose key
	// expired is not listed.
	Peers []Peer `json:"peers"`
}

// KeyExpiredMessage is what to tell a user whose node key expired at when.
func KeyExpiredMessage(when time.Time) string {
	return "node key expired " + when.UTC().Format(time.RFC3339) + "; ask an admin to extend it or re-enroll"
}

// Node is a node as the netmap describes it.
type Node struct {
	ID        wire.NodeID      `json:"id"`
	Name      string           `json:"name"`
	Key       wire.NodePublic  `json:"key,omitzero"`
	Addresses []netip.Prefix   `json:"addresses"`
	Endpoints []netip.AddrPort `json:"endpoints,omitempty"`
	Tags      []wire.Tag       `json:"tags,omitempty"`
	// KeyExpiry is when the node's key expires; zero means never.
	KeyExpiry time.Time `json:"key_expiry,omitzero"`
	// Ephemeral nodes are deleted when they go (latch down, agent exit).
	Ephemeral bool `json:"ephemeral,omitempty"`
}

// Peer is a peer with its data-plane counters.
type Peer struct {
	Node
	// Endpoint is where the data plane sends to the peer now.
	Endpoint      netip.AddrPort `json:"endpoint,omitzero"`
	LastHandshake time.Time      `json:"last_handshake,omitzero"`
	RxBytes       int64          `json:"rx_bytes"`
	TxBytes       int64          `json:"tx_bytes"`
	// Rules are the IDs of this node's rules that let the peer open flows
	// in; empty means the peer may be reached but may not connect in.
	Rules []string `json:"rules,omitempty"`
}

// PingRequest pings a peer over the overlay.
type PingRequest struct {
	// Peer is a peer's name or one of its overlay addresses.
	Peer string `json:"peer"`
	// Count is the number of echo requests; zero means 4.
	Count int `json:"count,omitempty"`
	// Interval between requests; zero means one second.
	Interval time.Duration `json:"interval,omitempty"`
	// Timeout for each reply; zero means two seconds.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// PingEvent is one line of a ping answer: first a Target, then one Reply
// per request, or an Error that ends the answer.
type PingEvent struct {
	Target *PingTarget `json:"target,omitempty"`
	Reply  *PingReply  `json:"reply,omitempty"`
	Error  string      `json:"error,omitempty"`
}

// PingTarget names what is pinged.
type PingTarget struct {
	Name    string     `json:"name"`
	Address netip.Addr `json:"address"`
}

// PingReply is the outcome of one echo request.
type PingReply struct {
	Seq int           `json:"seq"`
	RTT time.Duration `json:"rtt,omitempty"`
	// Error is set when no reply came ("timeout") or sending failed.
	Error string `json:"error,omitempty"`
}
