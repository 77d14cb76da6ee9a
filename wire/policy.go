package wire

import "time"

// Policy and access (just-in-time grant) API.
//
// Admin calls (Authorization: Bearer):
//
//	GET  PathPolicy                        -> PolicyInfo (the current version)
//	POST PathPolicy         SetPolicyRequest -> SetPolicyResponse
//	GET  PathPolicyVersions                -> []PolicyInfo (newest first, no Source)
//	GET  PathPolicyVersions/{v}            -> PolicyInfo
//	POST PathPolicyVersions/{v}/restore    -> SetPolicyResponse (saves it as a new version)
//	GET  PathPolicyPairs[?node=ID-or-name] -> PolicyPairs (scope nodes:read)
//	GET  PathAccess?state=pending|active|all -> []AccessRequest
//	POST PathAccess/{id}/approve  DecideRequest -> AccessRequest
//	POST PathAccess/{id}/deny     DecideRequest -> AccessRequest
//	POST PathAccess/{id}/revoke   DecideRequest -> AccessRequest
//
// Node call (mTLS, the requesting node is the grant's source):
//
//	POST PathNodeAccess       NodeAccessRequest -> AccessRequest
//	GET  PathNodeAccess/{id}  -> AccessRequest (the calling node's own requests only)
//
// A policy that fails to parse, validate or pass its tests is refused with
// 400 and a PolicyError body; the stored policy stays as it was.
const (
	PathPolicy         = "/api/v1/policy"
	PathPolicyVersions = "/api/v1/policy/versions"
	PathPolicyPairs    = "/api/v1/policy/pairs"
	PathAccess         = "/api/v1/access"
	PathNodeAccess     = "/api/v1/node/access"
)

// PolicyInfo is one saved version of the policy.
type PolicyInfo struct {
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	// Author names the token (its ID and user) that saved it.
	Author string `json:"author,omitempty"`
	// Source is the HuJSON text exactly as saved, comments included.
	Source string `json:"source,omitempty"`
}

// SetPolicyRequest saves a new policy, or with DryRun only validates it,
// runs its tests and reports what would change.
type SetPolicyRequest struct {
	Source string `json:"source"`
	DryRun bool   `json:"dry_run,omitempty"`
	// IfVersion, when non-zero, makes the save fail with 409 unless the
	// current version is IfVersion (no lost updates between check and set).
	IfVersion int `json:"if_version,omitempty"`
}

// SetPolicyResponse reports the saved (or, for a dry run, checked) policy
// and the node pairs it opens and closes on the current inventory.
type SetPolicyResponse struct {
	Version int    `json:"version"` // 0 for a dry run
	Gained  []Pair `json:"gained"`
	Lost    []Pair `json:"lost"`
}

// Pair is one permission on the current inventory: Src may open flows to
// Dst on Ports of Proto ("tcp", "udp", "icmp").
type Pair struct {
	Src   string `json:"src"` // node name
	Dst   string `json:"dst"` // node name
	Proto string `json:"proto"`
	// Ports is "5432" or "8000-8100"; empty for ICMP.
	Ports string `json:"ports,omitempty"`
}

// PolicyPairs lists the pairs the current policy's rules allow on the
// current inventory (just-in-time grants are not included), computed by
// the same compiler as a dry run's preview. Node, when set, is the name of
// the node the list was filtered to (pairs with it at either end).
type PolicyPairs struct {
	Version int    `json:"version"` // 0: no policy saved, no pairs
	Node    string `json:"node,omitempty"`
	Pairs   []Pair `json:"pairs"`
}

// PolicyError is the 400 body for a refused policy. Line and Column are
// 1-based and point at the offending text; both are 0 when the error is
// not tied to a place (a failing policy test names its test instead).
type PolicyError struct {
	Message string `json:"error"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
}

// NodeAccessRequest asks for just-in-time access from the calling node.
type NodeAccessRequest struct {
	// To is a service ("svc:db").
	To string `json:"to"`
	// Port narrows the grant to one port of the service; 0 means all of
	// the service's ports.
	Port     uint16        `json:"port,omitempty"`
	Duration time.Duration `json:"duration"`
	Reason   string        `json:"reason"`
}

// Access request states.
const (
	AccessPending  = "pending"
	AccessApproved = "approved" // active until Expires
	AccessDenied   = "denied"
	AccessRevoked  = "revoked"
	AccessExpired  = "expired"
)

// AccessRequest is a request and, once approved, the grant (session) it
// became. Everything about it is audited.
type AccessRequest struct {
	ID       string        `json:"id"`
	Src      NodeID        `json:"src"`
	SrcName  string        `json:"src_name"`
	To       string        `json:"to"`
	Port     uint16        `json:"port,omitempty"`
	Duration time.Duration `json:"duration"`
	Reason   string        `json:"reason"`
	State    string        `json:"state"`
	Created  time.Time     `json:"created"`
	// Approver is "policy" for auto-approved requests, else the deciding
	// token's user or ID.
	Approver       string    `json:"approver,omitempty"`
	Decided        time.Time `json:"decided,omitzero"`
	DecisionReason string    `json:"decision_reason,omitempty"`
	// Expires is set once approved: decision time plus Duration.
	Expires time.Time `json:"expires,omitzero"`
}

// DecideRequest carries the reason for an approval, denial or revocation.
type DecideRequest struct {
	Reason string `json:"reason,omitempty"`
}
