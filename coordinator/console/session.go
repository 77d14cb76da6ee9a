package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// Cookie names. The __Host- prefix makes the browser insist on Secure,
// Path=/ and no Domain: no other host (a sibling subdomain) can set them.
const (
	sessionCookie = "__Host-latch_session"
	// preCookie carries the double-submit CSRF token of the sign-in and
	// setup forms, before a session exists.
	preCookie = "__Host-latch_pre"
)

// touchEvery is how stale a session's LastSeen may get before a request
// writes it again (bounds store writes to one a minute per session).
const touchEvery = time.Minute

// csrfLabel separates the CSRF token's derivation from other uses of the
// session ID.
const csrfLabel = "latch console csrf v1"

// roleScopes maps a console role to the API scopes its sessions carry.
// Auditors can only read: every change they attempt is refused by the
// API's own scope check.
var roleScopes = map[string][]string{
	store.RoleOwner:    {wire.ScopeAdmin},
	store.RoleAdmin:    {wire.ScopeAdmin},
	store.RoleApprover: {wire.ScopeAccessApprove, wire.ScopeNodesRead, wire.ScopeAuditRead},
	store.RoleAuditor:  {wire.ScopeNodesRead, wire.ScopeAuditRead},
}

// roles in the order the console lists them.
var roles = []string{store.RoleOwner, store.RoleAdmin, store.RoleApprover, store.RoleAuditor}

// session is a request's signed-in user.
type session struct {
	id      []byte // the raw 256-bit ID from the cookie; never stored or logged
	idHash  []byte
	user    string
	role    string
	expires time.Time
	csrf    string
}

// principal is how the session calls the API.
func (s *session) principal() api.Principal {
	return api.Principal{ID: "console-" + hex.EncodeToString(s.idHash[:6]), User: s.user, Scopes: roleScopes[s.role]}
}

// can reports whether the session's scopes grant scope (as the API
// decides; used only to hide what the API would refuse anyway).
func (s *session) can(scope string) bool {
	for _, sc := range roleScopes[s.role] {
		if sc == scope || sc == wire.ScopeAdmin {
			return true
		}
	}
	return false
}

func hashID(id []byte) []byte {
	h := sha256.Sum256(id)
	return h[:]
}

// csrfToken derives the CSRF token of a session from its secret ID.
func csrfToken(id []byte) string {
	m := hmac.New(sha256.New, id)
	m.Write([]byte(csrfLabel))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newSession creates and stores a session for user and sets its cookie.
func (c *Console) newSession(ctx context.Context, w http.ResponseWriter, user string) error {
	id := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	now := c.cfg.Now()
	err := c.cfg.Store.CreateConsoleSession(ctx, store.ConsoleSession{
		IDHash: hashID(id), Username: user, Created: now, Expires: now.Add(c.cfg.SessionLifetime), LastSeen: now,
	})
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: base64.RawURLEncoding.EncodeToString(id), Path: "/",
		MaxAge: int(c.cfg.SessionLifetime / time.Second), Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
	return nil
}

// clearCookie deletes a cookie in the browser.
func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// errNoSession means the request is not signed in (no cookie, an unknown,
// expired or idle session, a disabled account).
var errNoSession = errors.New("not signed in")

// session returns the request's valid session.
func (c *Console) session(r *http.Request) (*session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, errNoSession
	}
	id, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || len(id) != 32 {
		return nil, errNoSession
	}
	idHash := hashID(id)
	ctx := r.Context()
	st, err := c.cfg.Store.ConsoleSession(ctx, idHash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	if !now.Before(st.Expires) || now.Sub(st.LastSeen) >= c.cfg.IdleTimeout {
		c.cfg.Store.DeleteConsoleSession(ctx, idHash)
		return nil, errNoSession
	}
	acct, err := c.cfg.Store.ConsoleAccount(ctx, st.Username)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	if acct.Disabled || roleScopes[acct.Role] == nil {
		return nil, errNoSession
	}
	if now.Sub(st.LastSeen) >= touchEvery {
		if err := c.cfg.Store.TouchConsoleSession(ctx, idHash, now); err != nil {
			c.log.Warn("touching console session", logErr, err)
		}
	}
	return &session{id: id, idHash: idHash, user: acct.Username, role: acct.Role, expires: st.Expires, csrf: csrfToken(id)}, nil
}

// validCSRF reports whether the form's csrf field is the session's token.
func validCSRF(r *http.Request, s *session) bool {
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// preToken returns the request's pre-session CSRF token, setting a new
// cookie if it has none.
func preToken(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(preCookie); err == nil && len(ck.Value) == 43 {
		return ck.Value
	}
	b := make([]byte, 32)
	rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: preCookie, Value: v, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return v
}

// validPreCSRF reports whether a sign-in or setup form carries the token
// of its pre-session cookie (double submit).
func validPreCSRF(r *http.Request) bool {
	ck, err := r.Cookie(preCookie)
	got := r.PostFormValue("csrf")
	return err == nil && ck.Value != "" && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ck.Value)) == 1
}
