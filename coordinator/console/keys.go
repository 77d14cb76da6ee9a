package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/latchnet/latch/wire"
)

type keysData struct {
	Keys   []wire.KeyInfo
	Tokens []wire.TokenInfo
	// NewKey and NewToken hold a secret just created: shown this once,
	// never stored by the console.
	NewKey   *wire.CreateKeyResponse
	NewToken *wire.CreateTokenResponse
	// Scopes are the scopes a token may get.
	Scopes []string
}

var tokenScopes = []string{wire.ScopeAdmin, wire.ScopeNodesRead, wire.ScopeNodesWrite, wire.ScopeKeysWrite,
	wire.ScopePolicyWrite, wire.ScopeAccessApprove, wire.ScopeAuditRead}

// keysPage renders the keys and tokens page with d's new secret, if any,
// and err as the page's error.
func (c *Console) keysPage(w http.ResponseWriter, r *http.Request, s *session, d keysData, status int, errMsg string) {
	v := newView(r, s, "Keys and tokens", "keys")
	d.Scopes = tokenScopes
	ctx := r.Context()
	if err := c.call(ctx, r, s, http.MethodGet, wire.PathKeys, nil, &d.Keys); err != nil {
		v.D = d
		c.fail(w, r, "keys", v, err)
		return
	}
	if s.can(wire.ScopeAdmin) {
		if err := c.call(ctx, r, s, http.MethodGet, wire.PathTokens, nil, &d.Tokens); err != nil {
			v.D = d
			c.fail(w, r, "keys", v, err)
			return
		}
	}
	v.D = d
	v.Error = errMsg
	c.render(w, status, "keys", v)
}

func (c *Console) handleKeys(w http.ResponseWriter, r *http.Request, s *session) {
	c.keysPage(w, r, s, keysData{}, http.StatusOK, "")
}

func (c *Console) handleCreateKey(w http.ResponseWriter, r *http.Request, s *session) {
	req := wire.CreateKeyRequest{
		Description:  strings.TrimSpace(r.PostFormValue("description")),
		Reusable:     r.PostFormValue("kind") == "reusable",
		Ephemeral:    r.PostFormValue("ephemeral") == "on",
		Tags:         splitTags(r.PostFormValue("tags")),
		NoNodeExpiry: r.PostFormValue("no_node_expiry") == "on",
	}
	var err error
	if req.Expiry, err = parseDuration(r.PostFormValue("expiry")); err != nil {
		c.keysPage(w, r, s, keysData{}, http.StatusBadRequest, "key expiry: "+err.Error())
		return
	}
	if req.NodeExpiry, err = parseDuration(r.PostFormValue("node_expiry")); err != nil {
		c.keysPage(w, r, s, keysData{}, http.StatusBadRequest, "node expiry: "+err.Error())
		return
	}
	if mu := strings.TrimSpace(r.PostFormValue("max_uses")); mu != "" {
		if req.MaxUses, err = strconv.Atoi(mu); err != nil || req.MaxUses < 0 {
			c.keysPage(w, r, s, keysData{}, http.StatusBadRequest, "maximum uses: want a whole number")
			return
		}
	}
	var resp wire.CreateKeyResponse
	if err := c.call(r.Context(), r, s, http.MethodPost, wire.PathKeys, req, &resp); err != nil {
		c.keysPage(w, r, s, keysData{}, statusOf(err), err.Error())
		return
	}
	c.keysPage(w, r, s, keysData{NewKey: &resp}, http.StatusOK, "")
}

func (c *Console) handleRevokeKey(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.call(r.Context(), r, s, http.MethodDelete, wire.PathKeys+"/"+url.PathEscape(r.PathValue("id")), nil, nil); err != nil {
		c.keysPage(w, r, s, keysData{}, statusOf(err), err.Error())
		return
	}
	redirect(w, r, Prefix+"/keys", "revoked")
}

func (c *Console) handleCreateToken(w http.ResponseWriter, r *http.Request, s *session) {
	r.ParseForm()
	req := wire.CreateTokenRequest{
		User:        strings.TrimSpace(r.PostFormValue("user")),
		Scopes:      r.PostForm["scope"],
		Description: strings.TrimSpace(r.PostFormValue("description")),
	}
	var err error
	if req.Expiry, err = parseDuration(r.PostFormValue("expiry")); err != nil {
		c.keysPage(w, r, s, keysData{}, http.StatusBadRequest, "token expiry: "+err.Error())
		return
	}
	var resp wire.CreateTokenResponse
	if err := c.call(r.Context(), r, s, http.MethodPost, wire.PathTokens, req, &resp); err != nil {
		c.keysPage(w, r, s, keysData{}, statusOf(err), err.Error())
		return
	}
	c.keysPage(w, r, s, keysData{NewToken: &resp}, http.StatusOK, "")
}

func (c *Console) handleRevokeToken(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.call(r.Context(), r, s, http.MethodDelete, wire.PathTokens+"/"+url.PathEscape(r.PathValue("id")), nil, nil); err != nil {
		c.keysPage(w, r, s, keysData{}, statusOf(err), err.Error())
		return
	}
	redirect(w, r, Prefix+"/keys", "revoked")
}

// statusOf is the status an API refusal had, 500 otherwise.
func statusOf(err error) int {
	if ae, ok := err.(*apiError); ok {
		return ae.Status
	}
	return http.StatusInternalServerError
}
