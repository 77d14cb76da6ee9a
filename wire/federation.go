package wire

import "time"

// PathTrustRules manages workload identity trust rules (keys:write
// scope): GET lists, POST creates (TrustRuleRequest -> TrustRule),
// DELETE PathTrustRules/{id} deletes.
const PathTrustRules = "/api/v1/trust-rules"

// TrustRuleRequest defines a trust rule: a node presenting an OIDC ID
// token from Issuer for Audience whose claims match every entry of Claims
// may enroll, with Tags, for at most MaxLifetime. Claim patterns match
// whole claim values; "*" matches any run of characters except "/"
// and ":" and "**" any run at all ("repo:acme/*:ref:refs/heads/main").
type TrustRuleRequest struct {
	Name        string            `json:"name"`
	Issuer      string            `json:"issuer"`
	Audience    string            `json:"audience"`
	Claims      map[string]string `json:"claims"`
	Tags        []Tag             `json:"tags"`
	Ephemeral   bool              `json:"ephemeral,omitempty"`
	MaxLifetime time.Duration     `json:"max_lifetime,omitempty"` // zero: 1h; at most 24h
}

// TrustRule is a stored trust rule.
type TrustRule struct {
	ID string `json:"id"`
	TrustRuleRequest
	Created time.Time `json:"created"`
	// Uses counts the nodes it enrolled.
	Uses int `json:"uses"`
}
