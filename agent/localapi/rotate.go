package localapi

import (
	"context"
	"net/http"

	"github.com/latchnet/latch/wire"
)

// PathRotate replaces the node's WireGuard key now:
//
//	POST /v1/rotate              -> RotateResponse
const PathRotate = "/v1/rotate"

// RotateResponse answers a rotation.
type RotateResponse struct {
	// OldKey is the WireGuard public key the node had.
	OldKey wire.NodePublic `json:"old_key"`
	// NewKey is the WireGuard public key the node and its peers use now.
	NewKey wire.NodePublic `json:"new_key"`
}

// Rotator is a Backend that can rotate the node's WireGuard key. It is
// separate from Backend so backends without rotation answer 501.
type Rotator interface {
	// Rotate replaces the node's WireGuard key, tells the coordinator and
	// reconfigures the data plane with the new key.
	Rotate(ctx context.Context) (RotateResponse, error)
}

func (s *server) rotate(w http.ResponseWriter, r *http.Request) {
	rb, ok := s.b.(Rotator)
	if !ok {
		writeError(w, Errorf(http.StatusNotImplemented, "this agent cannot rotate its key"))
		return
	}
	resp, err := rb.Rotate(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// Rotate calls POST /v1/rotate.
func (c *Client) Rotate(ctx context.Context) (RotateResponse, error) {
	var resp RotateResponse
	err := c.do(ctx, http.MethodPost, PathRotate, nil, &resp)
	return resp, err
}
