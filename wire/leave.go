package wire

// PathLeave is the agent route by which an ephemeral node removes itself
// from the network as it exits:
//
//	POST PathLeave   LeaveRequest -> 204 No Content          (mTLS)
//
// The coordinator deletes the node and its stream in one transaction and
// one netmap version, so every peer drops it with the same delta, and
// records the leave in the audit log ("node.leave"). Only ephemeral nodes
// may leave (409 otherwise): a permanent node stays enrolled across
// `latch down` and is removed by an admin. A node that already left is no
// longer authenticated, so a repeated leave answers 403.
const PathLeave = "/api/v1/node/leave"

// LeaveRequest says why the node leaves ("down", "shutdown"); the reason is
// only recorded in the audit log.
type LeaveRequest struct {
	Reason string `json:"reason,omitempty"`
}

// MaxLeaveReason bounds LeaveRequest.Reason.
const MaxLeaveReason = 64
