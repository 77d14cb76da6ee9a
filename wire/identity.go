package wire

import "time"

// Admin actions on one node, under PathNodes/{id-or-name}. Each needs the
// nodes:write scope and is audited.
const (
	// PathNodeQuarantine: POST QuarantineRequest quarantines the node:
	// within a second it loses every access (both ways) except what rules
	// naming "status:quarantined" give it (remediation).
	PathNodeQuarantine = "/quarantine"
	// PathNodeUnquarantine: POST (empty body or {}) restores its access.
	PathNodeUnquarantine = "/unquarantine"
	// PathNodeExpiry: POST SetNodeExpiryRequest sets when the node expires.
	PathNodeExpiry = "/expiry"
	// PathNodeTags: POST SetNodeTagsRequest replaces the node's tags.
	PathNodeTags = "/tags"
)

// QuarantineRequest quarantines a node.
type QuarantineRequest struct {
	// Reason is recorded in the audit log and shown with the node.
	Reason string `json:"reason,omitempty"`
}

// SetNodeExpiryRequest sets a node's key expiry. Exactly one of In, Never
// and Now is set. Never is refused for untagged nodes.
type SetNodeExpiryRequest struct {
	In    time.Duration `json:"in,omitempty"`
	Never bool          `json:"never,omitempty"`
	Now   bool          `json:"now,omitempty"`
}

// SetNodeTagsRequest replaces a node's tags. Every tag must be known to
// the current policy (tagOwners).
type SetNodeTagsRequest struct {
	Tags []Tag `json:"tags"`
}
