package console

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/latchnet/latch/wire"
)

type policyData struct {
	// Source is the editor's text: the current policy, a viewed version
	// or what was just submitted.
	Source string
	// Current is the current version (0: none saved); Viewing a version
	// shown read-only.
	Current, Viewing int
	Versions         []wire.PolicyInfo
	// Checked is the result of a check or save: the pairs gained and lost.
	Checked *wire.SetPolicyResponse
	// Saved reports that Checked came from a save.
	Saved bool
	// ErrLine and ErrColumn place the error in the source, 0 when unknown.
	ErrLine, ErrColumn int
}

// loadPolicy fills the current version, its source (unless keepSource)
// and the version list.
func (c *Console) loadPolicy(r *http.Request, s *session, d *policyData, keepSource bool) error {
	ctx := r.Context()
	var cur wire.PolicyInfo
	var ae *apiError
	switch err := c.call(ctx, r, s, http.MethodGet, wire.PathPolicy, nil, &cur); {
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
	case err != nil:
		return err
	default:
		d.Current = cur.Version
		if !keepSource {
			d.Source = cur.Source
		}
	}
	return c.call(ctx, r, s, http.MethodGet, wire.PathPolicyVersions, nil, &d.Versions)
}

func (c *Console) handlePolicy(w http.ResponseWriter, r *http.Request, s *session) {
	v := newView(r, s, "Policy", "policy")
	var d policyData
	err := c.loadPolicy(r, s, &d, false)
	if err == nil {
		if raw := r.URL.Query().Get("v"); raw != "" {
			n, perr := strconv.Atoi(raw)
			if perr != nil || n < 1 {
				v.Error = "version: want a positive number"
			} else {
				var p wire.PolicyInfo
				if err = c.call(r.Context(), r, s, http.MethodGet, fmt.Sprintf("%s/%d", wire.PathPolicyVersions, n), nil, &p); err == nil {
					d.Source, d.Viewing = p.Source, p.Version
				}
			}
		}
	}
	v.D = d
	if err != nil {
		c.fail(w, r, "policy", v, err)
		return
	}
	c.render(w, http.StatusOK, "policy", v)
}

// handleSetPolicy checks (op=check: the API's dry run) or saves the
// submitted policy, showing the pairs it gains and loses, or the API's
// error at its line and column.
func (c *Console) handleSetPolicy(w http.ResponseWriter, r *http.Request, s *session) {
	v := newView(r, s, "Policy", "policy")
	d := policyData{Source: r.PostFormValue("source")}
	save := r.PostFormValue("op") == "save"
	req := wire.SetPolicyRequest{Source: d.Source, DryRun: !save}
	if iv, err := strconv.Atoi(r.PostFormValue("if_version")); err == nil && iv > 0 && save {
		req.IfVersion = iv
	}
	var resp wire.SetPolicyResponse
	callErr := c.call(r.Context(), r, s, http.MethodPost, wire.PathPolicy, req, &resp)
	if err := c.loadPolicy(r, s, &d, true); err != nil {
		v.D = d
		c.fail(w, r, "policy", v, err)
		return
	}
	status := http.StatusOK
	if callErr != nil {
		var ae *apiError
		if !errors.As(callErr, &ae) {
			v.D = d
			c.fail(w, r, "policy", v, callErr)
			return
		}
		status = ae.Status
		d.ErrLine, d.ErrColumn = ae.Line, ae.Column
		v.Error = ae.withPlace()
	} else {
		d.Checked, d.Saved = &resp, save
		if save {
			v.Flash = fmt.Sprintf("Saved as version %d.", resp.Version)
		} else {
			v.Flash = "The policy is valid and its tests pass. Nothing was saved."
		}
	}
	v.D = d
	c.render(w, status, "policy", v)
}

func (c *Console) handleRestorePolicy(w http.ResponseWriter, r *http.Request, s *session) {
	n, err := strconv.Atoi(r.PathValue("v"))
	if err != nil || n < 1 {
		plainError(w, http.StatusBadRequest, "version: want a positive number")
		return
	}
	var resp wire.SetPolicyResponse
	if err := c.call(r.Context(), r, s, http.MethodPost, fmt.Sprintf("%s/%d/restore", wire.PathPolicyVersions, n), struct{}{}, &resp); err != nil {
		v := newView(r, s, "Policy", "policy")
		var d policyData
		if lerr := c.loadPolicy(r, s, &d, false); lerr != nil {
			err = lerr
		}
		v.D = d
		c.fail(w, r, "policy", v, err)
		return
	}
	redirect(w, r, Prefix+"/policy", "restored")
}
