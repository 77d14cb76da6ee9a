package control

import (
	"context"
	"fmt"
	"net/http"

	"github.com/latchnet/latch/wire"
)

// Rotate tells the coordinator the node's new WireGuard public key and
// returns the node as the coordinator now records it. Asking again with
// the key the coordinator already has succeeds. A refusal by the
// coordinator is returned as an error wrapping *APIError.
func (c *Client) Rotate(ctx context.Context, key wire.NodePublic) (wire.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var resp wire.RotateResponse
	if err := doJSON(ctx, c.hc, http.MethodPost, c.base+wire.PathRotate, wire.RotateRequest{WireGuardKey: key}, &resp); err != nil {
		return wire.Node{}, fmt.Errorf("rotating WireGuard key: %w", err)
	}
	if resp.Node.Key != key {
		return wire.Node{}, fmt.Errorf("rotating WireGuard key: coordinator recorded another key")
	}
	return resp.Node, nil
}
