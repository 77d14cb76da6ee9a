package control

import (
	"context"
	"fmt"
	"net/http"

	"github.com/latchnet/latch/wire"
)

// ReportFlows sends one interval's flow summaries (POST wire.PathNodeFlows,
// mTLS). The caller bounds the report to wire.MaxFlowsPerReport summaries
// and drops it on error: flow reports are never retried. A refusal by the
// coordinator (a 429 included) is returned as an error wrapping *APIError.
func (c *Client) ReportFlows(ctx context.Context, r wire.FlowReport) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := doJSON(ctx, c.hc, http.MethodPost, c.base+wire.PathNodeFlows, r, nil); err != nil {
		return fmt.Errorf("reporting flows: %w", err)
	}
	return nil
}
