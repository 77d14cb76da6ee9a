package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/latchnet/latch/wire"
)

// AccessRequest returns one of this node's own access requests as the
// coordinator holds it now (GET wire.PathNodeAccess/{id}): pending,
// approved, denied, revoked or expired. A refusal by the coordinator is
// returned as an error wrapping *APIError.
func (c *Client) AccessRequest(ctx context.Context, id string) (wire.AccessRequest, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var resp wire.AccessRequest
	if err := doJSON(ctx, c.hc, http.MethodGet, c.base+wire.PathNodeAccess+"/"+url.PathEscape(id), nil, &resp); err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			return wire.AccessRequest{}, fmt.Errorf("reading access request: %w", ae)
		}
		return wire.AccessRequest{}, fmt.Errorf("reading access request: %s", oneLine(err))
	}
	return resp, nil
}
