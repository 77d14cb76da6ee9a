package console

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/latchnet/latch/wire"
)

type accessData struct {
	Pending, Active []wire.AccessRequest
}

func (c *Console) accessPage(w http.ResponseWriter, r *http.Request, s *session, status int, errMsg string) {
	v := newView(r, s, "Access", "access")
	var d accessData
	ctx := r.Context()
	err := c.call(ctx, r, s, http.MethodGet, wire.PathAccess+"?state=pending", nil, &d.Pending)
	if err == nil {
		err = c.call(ctx, r, s, http.MethodGet, wire.PathAccess+"?state=active", nil, &d.Active)
	}
	v.D = d
	if err != nil {
		c.fail(w, r, "access", v, err)
		return
	}
	v.Error = errMsg
	c.render(w, status, "access", v)
}

func (c *Console) handleAccess(w http.ResponseWriter, r *http.Request, s *session) {
	c.accessPage(w, r, s, http.StatusOK, "")
}

// handleAccessAction approves, denies or revokes a request through the API.
func (c *Console) handleAccessAction(w http.ResponseWriter, r *http.Request, s *session) {
	action := r.PathValue("action")
	done := map[string]string{"approve": "approved", "deny": "denied", "revoke": "grant-ended"}[action]
	if done == "" {
		plainError(w, http.StatusNotFound, "no such access action")
		return
	}
	path := wire.PathAccess + "/" + url.PathEscape(r.PathValue("id")) + "/" + action
	req := wire.DecideRequest{Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	if err := c.call(r.Context(), r, s, http.MethodPost, path, req, nil); err != nil {
		c.accessPage(w, r, s, statusOf(err), err.Error())
		return
	}
	redirect(w, r, Prefix+"/access", done)
}
