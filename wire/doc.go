// Package wire holds the messages exchanged between a Latch agent and the
// coordinator, and the single protocol version both sides speak.
//
// It is a leaf package: it imports nothing of Latch's, so the agent, the
// coordinator and the CLI can all depend on it without depending on each
// other. Every type here is encoded as JSON; field names are part of the
// protocol and change only together with ProtocolVersion.
//
// # Transport
//
// Enrollment is one HTTPS (TLS 1.3) call, POST PathEnroll, authenticated by
// an enrollment key. The agent verifies the coordinator against the CA
// fingerprint carried inside that key, so there is no trust on first use.
// Every later call is mutual TLS with the node certificate issued at
// enrollment:
//
//	POST PathEnroll   EnrollRequest -> EnrollResponse        (server TLS only)
//	GET  PathStream   -> newline-delimited StreamMessage      (mTLS)
//	POST PathUpdate   UpdateRequest -> 204                    (mTLS)
//	POST PathRenew    RenewRequest  -> RenewResponse          (mTLS)
//
// The stream starts with a full Netmap, then carries Deltas as the network
// changes and KeepAlives while it does not.
package wire

// ProtocolVersion is the one version of the agent<->coordinator protocol.
// It is sent in the HeaderProtocol header of every call; a coordinator
// refuses versions it does not speak with 426 Upgrade Required.
const ProtocolVersion = 1

// HeaderProtocol carries ProtocolVersion on every agent call.
const HeaderProtocol = "Latch-Protocol"

// Agent-facing endpoints of the coordinator.
const (
	PathEnroll = "/api/v1/enroll"
	PathStream = "/api/v1/node/stream"
	PathUpdate = "/api/v1/node/update"
	PathRenew  = "/api/v1/node/renew"
)

// MaxRequestBytes bounds every request body the coordinator reads, but for
// policy saves.
const MaxRequestBytes = 64 << 10

// MaxPolicyRequestBytes bounds a policy save: a 1 MiB policy (the most the
// parser takes) with room for its JSON string escapes.
const MaxPolicyRequestBytes = 2 << 20

// Error is the body of every non-2xx response from the coordinator's API.
// Message is one line, safe to show to a user, and never contains a secret.
type Error struct {
	Message string `json:"error"`
}
