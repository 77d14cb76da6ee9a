package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/latchnet/latch/wire"
)

// Leave tells the coordinator that this ephemeral node leaves the network
// for good (POST wire.PathLeave): it is deleted at once and every peer
// told. If the coordinator no longer knows the node (401/403) the error
// wraps ErrRefused: the node is gone either way. Other refusals wrap
// *APIError.
func (c *Client) Leave(ctx context.Context, req wire.LeaveRequest) error {
	err := doJSON(ctx, c.hc, http.MethodPost, c.base+wire.PathLeave, req, nil)
	var ae *APIError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden):
		return fmt.Errorf("leaving: %w: %s", ErrRefused, ae.Message)
	case errors.As(err, &ae):
		return fmt.Errorf("leaving: %w", ae)
	}
	return fmt.Errorf("leaving: %s", oneLine(err))
}
