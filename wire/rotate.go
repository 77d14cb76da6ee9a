package wire

// PathRotate is the agent route that replaces the node's WireGuard key:
//
//	POST PathRotate   RotateRequest -> RotateResponse        (mTLS)
//
// The coordinator records the new key and sends every peer a delta with
// it; the node's own stream gets its Self updated. Repeating a rotation to
// the key the node already has succeeds and changes nothing, so an agent
// that lost the answer may simply ask again.
const PathRotate = "/api/v1/node/rotate"

// RotateRequest carries the node's new WireGuard public key, generated
// locally. It must not be zero nor belong to another node.
type RotateRequest struct {
	WireGuardKey NodePublic `json:"wireguard_key"`
}

// RotateResponse answers a successful rotation with the node as now
// recorded.
type RotateResponse struct {
	Node Node `json:"node"`
}
