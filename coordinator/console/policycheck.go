package console

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/latchnet/latch/wire"
)

// policyCheck is the answer to the editor's live check.
type policyCheck struct {
	OK bool `json:"ok"`
	// Error is the API's refusal, with Line and Column when it has a place.
	Error  string `json:"error,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	// Gained and Lost count the node pairs the policy would open and close.
	Gained int `json:"gained"`
	Lost   int `json:"lost"`
}

// handleCheckPolicy runs the API's dry run of the submitted policy (parse,
// validate, run its tests, diff the pairs) for the editor as the admin
// types, and answers JSON. Nothing is saved; it needs the same scope as
// saving, and a CSRF token like every POST.
func (c *Console) handleCheckPolicy(w http.ResponseWriter, r *http.Request, s *session) {
	var resp wire.SetPolicyResponse
	out := policyCheck{}
	err := c.call(r.Context(), r, s, http.MethodPost, wire.PathPolicy, wire.SetPolicyRequest{Source: r.PostFormValue("source"), DryRun: true}, &resp)
	status := http.StatusOK
	var ae *apiError
	switch {
	case err == nil:
		out.OK, out.Gained, out.Lost = true, len(resp.Gained), len(resp.Lost)
	case errors.As(err, &ae) && ae.Status < 500:
		out.Error, out.Line, out.Column = ae.withPlace(), ae.Line, ae.Column
		if ae.Status == http.StatusForbidden || ae.Status == http.StatusUnauthorized {
			status = ae.Status
		}
	default:
		c.log.Error("console: checking a policy", logErr, err)
		status, out.Error = http.StatusInternalServerError, "internal error"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(out)
}
