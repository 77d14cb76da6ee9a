package agent

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/latchnet/latch/agent/control"
	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/wire"
)

// AccessRequest returns one of this node's own access requests as the
// coordinator holds it now, for `latch access request --wait`.
func (a *Agent) AccessRequest(ctx context.Context, id string) (wire.AccessRequest, error) {
	if strings.TrimSpace(id) == "" {
		return wire.AccessRequest{}, localapi.Errorf(http.StatusBadRequest, "access request: the request ID is required")
	}
	c, err := a.coordinatorClient()
	if err != nil {
		return wire.AccessRequest{}, err
	}
	ar, err := c.AccessRequest(ctx, id)
	if err != nil {
		return wire.AccessRequest{}, coordinatorError(err)
	}
	return ar, nil
}

// coordinatorClient returns the client of the current session, or a
// local API error saying why there is none.
func (a *Agent) coordinatorClient() (*control.Client, error) {
	a.mu.Lock()
	st, s, refused, lastErr := a.st, a.sess, a.refused, a.lastErr
	a.mu.Unlock()
	switch {
	case st == nil:
		return nil, localapi.Errorf(http.StatusConflict, "not enrolled: run latch up first")
	case s == nil || s.client == nil:
		return nil, localapi.Errorf(http.StatusConflict, "latch is down: run latch up first")
	case refused:
		return nil, localapi.Errorf(http.StatusConflict, "the coordinator refuses this node: %s", lastErr)
	}
	return s.client, nil
}

// coordinatorError keeps a coordinator refusal's status (4xx) for the
// local API; anything else is a bad gateway.
func coordinatorError(err error) error {
	var ae *control.APIError
	if errors.As(err, &ae) && ae.Status/100 == 4 {
		return &localapi.Error{Status: ae.Status, Message: err.Error()}
	}
	return &localapi.Error{Status: http.StatusBadGateway, Message: err.Error()}
}
