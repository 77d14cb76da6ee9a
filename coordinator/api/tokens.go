package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// API token lifetimes.
const (
	DefaultTokenExpiry = 90 * 24 * time.Hour
	MaxTokenExpiry     = 366 * 24 * time.Hour
)

// Scopes lists every scope a token may carry.
var Scopes = []string{
	wire.ScopeAdmin, wire.ScopeNodesRead, wire.ScopeNodesWrite, wire.ScopeKeysWrite,
	wire.ScopePolicyWrite, wire.ScopeAccessApprove, wire.ScopeAuditRead,
}

// Users the coordinator itself acts as in records; no token may claim them.
const (
	userPolicy = "policy" // the approver of auto-approved grants
	userSystem = "system" // closes the requests of deleted nodes
)

const maxUser = 256

// checkUser accepts 1 to 256 bytes of printable UTF-8 without spaces,
// other than the names the coordinator uses itself.
func checkUser(u string) error {
	switch {
	case u == "":
		return errors.New("user required (the person or system the token acts for, e.g. alice@example.com)")
	case len(u) > maxUser:
		return fmt.Errorf("user longer than %d bytes", maxUser)
	case !utf8.ValidString(u) || strings.IndexFunc(u, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0:
		return errors.New("user must be printable UTF-8 without spaces")
	case u == userPolicy || u == userSystem:
		return fmt.Errorf("user %q is reserved", u)
	}
	return nil
}

func tokenInfo(t store.APIToken) wire.TokenInfo {
	ti := wire.TokenInfo{
		ID:          t.ID,
		User:        t.User,
		Scopes:      t.Scopes,
		Description: t.Description,
		Created:     t.Created,
		Expires:     t.Expires,
	}
	if ti.Scopes == nil {
		ti.Scopes = []string{}
	}
	if !t.Revoked.IsZero() {
		rev := t.Revoked
		ti.Revoked = &rev
	}
	return ti
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	var req wire.CreateTokenRequest
	if !decode(w, r, &req) {
		return
	}
	if err := checkUser(req.User); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(req.Scopes) == 0 {
		writeError(w, http.StatusBadRequest, "at least one scope required: "+strings.Join(Scopes, ", "))
		return
	}
	for _, sc := range req.Scopes {
		if !slices.Contains(Scopes, sc) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown scope %q: want one of %s", truncate(sc, 40), strings.Join(Scopes, ", ")))
			return
		}
	}
	switch {
	case req.Expiry < 0:
		writeError(w, http.StatusBadRequest, "expiry must not be negative")
		return
	case req.Expiry > MaxTokenExpiry:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("expiry %s exceeds the maximum of %s", req.Expiry, MaxTokenExpiry))
		return
	case len(req.Description) > maxDescription:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("description longer than %d bytes", maxDescription))
		return
	}
	if req.Expiry == 0 {
		req.Expiry = DefaultTokenExpiry
	}
	scopes := slices.Clone(req.Scopes)
	slices.Sort(scopes)
	now := s.cfg.Now().UTC().Truncate(time.Microsecond)
	tok := NewToken()
	t := store.APIToken{
		ID:          tok.ID,
		User:        req.User,
		Scopes:      slices.Compact(scopes),
		Description: strings.Join(strings.Fields(req.Description), " "),
		Created:     now,
		Expires:     now.Add(req.Expiry),
	}
	ctx := s.audited(r, audit.TokenCreate, "token:"+t.ID, map[string]any{
		"user": t.User, "scopes": t.Scopes, "expires": t.Expires, "description": t.Description})
	if err := s.cfg.Store.CreateAPIToken(ctx, t, store.HashSecret(tok.Secret)); err != nil {
		s.internalError(w, r, "creating API token", err)
		return
	}
	s.log.Info("API token created", "new_token_id", t.ID, "user", t.User, "scopes", strings.Join(t.Scopes, ","),
		logToken, tokenID(r), "expires", t.Expires)
	writeJSON(w, http.StatusCreated, wire.CreateTokenResponse{Token: tok.String(), Info: tokenInfo(t)})
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) {
	serveList(s, w, r, "listing API tokens", s.cfg.Store.APITokens, tokenInfo)
}

func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	_, err := s.cfg.Store.RevokeAPIToken(s.audited(r, audit.TokenRevoke, "token:"+id, nil), id, s.cfg.Now())
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("API token %q not found", truncate(id, 20)))
		return
	}
	if err != nil {
		s.internalError(w, r, "revoking API token", err)
		return
	}
	s.log.Info("API token revoked", "revoked_token_id", id, logToken, tokenID(r))
	w.WriteHeader(http.StatusNoContent)
}
