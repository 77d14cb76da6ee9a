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
}
