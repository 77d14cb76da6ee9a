package wire

import "time"

// Admin API paths. Every call carries "Authorization: Bearer <token>".
const (
	PathKeys  = "/api/v1/keys"  // GET list, POST create; DELETE PathKeys/{id} revokes
	PathNodes = "/api/v1/nodes" // GET list; GET and DELETE PathNodes/{id}
)

// CreateKeyRequest creates an enrollment key.
type CreateKeyRequest struct {
	Description string `json:"description,omitempty"`
	// Reusable keys enroll any number of nodes until they expire; others
	// enroll exactly one.
	Reusable  bool  `json:"reusable,omitempty"`
	Ephemeral bool  `json:"ephemeral,omitempty"`
	Tags      []Tag `json:"tags,omitempty"`
	// Expiry is the key's lifetime from now; zero means the default (24h).
	// It is capped at 90 days.
	Expiry time.Duration `json:"expiry,omitempty"`
	// NodeExpiry is the key expiry of the nodes this key enrolls, from
	// their enrollment; zero means the coordinator's default.
	NodeExpiry time.Duration `json:"node_expiry,omitempty"`
	// NoNodeExpiry makes the nodes it enrolls never expire; only for keys
	// with tags (server nodes).
	NoNodeExpiry bool `json:"no_node_expiry,omitempty"`
	// MaxUses bounds how many nodes a reusable key enrolls; zero means no
	// bound but the key's expiry.
	MaxUses int `json:"max_uses,omitempty"`
}

// KeyInfo describes an enrollment key. It never carries the secret.
type KeyInfo struct {
	ID          string     `json:"id"`
	Description string     `json:"description,omitempty"`
	Reusable    bool       `json:"reusable"`
	Ephemeral   bool       `json:"ephemeral"`
	Tags        []Tag      `json:"tags,omitempty"`
	Created     time.Time  `json:"created"`
	Expires     time.Time  `json:"expires"`
	Revoked     *time.Time `json:"revoked,omitempty"`
	Uses        int        `json:"uses"`
	// NodeExpiry, NoNodeExpiry and MaxUses are as in CreateKeyRequest;
	// NodeExpiry is the effective value.
	NodeExpiry   time.Duration `json:"node_expiry,omitempty"`
	NoNodeExpiry bool          `json:"no_node_expiry,omitempty"`
	MaxUses      int           `json:"max_uses,omitempty"`
}

// CreateKeyResponse is the only place the full key ever appears.
type CreateKeyResponse struct {
	Key  string  `json:"key"`
	Info KeyInfo `json:"info"`
}

// NodeInfo is the admin's view of a node.
type NodeInfo struct {
	Node
	Hostname string    `json:"hostname"`
	Online   bool      `json:"online"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	KeyID    string    `json:"enrollment_key_id,omitempty"`
	// Expired reports that KeyExpiry has passed.
	Expired bool `json:"expired,omitempty"`
	// Quarantined nodes keep only the access of rules that name
	// "status:quarantined".
	Quarantined bool `json:"quarantined,omitempty"`
	// QuarantineReason says why, as the quarantining caller gave it.
	QuarantineReason string `json:"quarantine_reason,omitempty"`
	// Posture is the node's last reported posture, nil if it never sent one.
	Posture *Posture `json:"posture,omitempty"`
	// CertExpires is the expiry of the node's current certificate.
	CertExpires time.Time `json:"cert_expires,omitzero"`
	// TrustRule names the workload identity trust rule the node enrolled
	// under, if it did.
	TrustRule string `json:"trust_rule,omitempty"`
}

// PathTokens manages admin API tokens: GET list, POST create;
// DELETE PathTokens/{id} revokes.
const PathTokens = "/api/v1/tokens"

// Token scopes. A call outside its token's scopes gets 403.
const (
	ScopeAdmin         = "admin"          // everything
	ScopeNodesRead     = "nodes:read"     // list and show nodes
	ScopeNodesWrite    = "nodes:write"    // delete nodes
	ScopeKeysWrite     = "keys:write"     // create, list and revoke enrollment keys
	ScopePolicyWrite   = "policy:write"   // save and restore the policy (reading needs nodes:read)
	ScopeAccessApprove = "access:approve" // list, approve, deny and revoke access requests
	ScopeAuditRead     = "audit:read"     // read the audit log
)

// CreateTokenRequest creates an API token.
type CreateTokenRequest struct {
	// User is the person (or system) the token acts for, e.g.
	// "alice@example.com"; policy approvers and groups name users.
	User        string   `json:"user"`
	Scopes      []string `json:"scopes"`
	Description string   `json:"description,omitempty"`
	// Expiry is the lifetime from now; zero means the default (90 days).
	Expiry time.Duration `json:"expiry,omitempty"`
}

// TokenInfo describes an API token. It never carries the secret.
type TokenInfo struct {
	ID          string     `json:"id"`
	User        string     `json:"user"`
	Scopes      []string   `json:"scopes"`
	Description string     `json:"description,omitempty"`
	Created     time.Time  `json:"created"`
	Expires     time.Time  `json:"expires,omitzero"`
	Revoked     *time.Time `json:"revoked,omitempty"`
}

// CreateTokenResponse is the only place the full token ever appears.
type CreateTokenResponse struct {
	Token string    `json:"token"`
	Info  TokenInfo `json:"info"`
}
