package console

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/coordinator/store"
)

// Audit actions of the console's own events (its other actions are
// audited by the API routes it calls).
const (
	AuditLogin         = "console.login"
	AuditLoginFailed   = "console.login_failed"
	AuditLogout        = "console.logout"
	AuditSetup         = "console.setup"
	AuditAccountCreate = "console.account_create"
	AuditAccountChange = "console.account_change"
)

// errBadLogin is the one message of every failed sign-in: it does not say
// whether the user exists.
const errBadLogin = "invalid user name or password"

// validUsername is what a console user name may look like (an email
// address fits).
var validUsername = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._@+-]{0,63}$`)

// routes registers the console's pages.
func (c *Console) routes() {
	m := c.mux
	m.HandleFunc("GET "+Prefix+"/setup", c.handleSetupForm)
	m.HandleFunc("POST "+Prefix+"/setup", c.handleSetup)
	m.HandleFunc("GET "+Prefix+"/login", c.handleLoginForm)
	m.HandleFunc("POST "+Prefix+"/login", c.handleLogin)
	m.HandleFunc("GET "+Prefix+"/login/oidc", c.handleOIDCStart) // oidc.go
	m.HandleFunc("GET "+oidcCallback, c.handleOIDCCallback)      // oidc.go
	m.HandleFunc("POST "+Prefix+"/users/{name}/oidc", c.authed(c.handleUserOIDC))
	m.HandleFunc("POST "+Prefix+"/logout", c.authed(c.handleLogout))
	m.HandleFunc("GET "+Prefix+"/{$}", c.authed(c.handleOverview))
	m.HandleFunc("GET "+Prefix+"/nodes", c.authed(c.handleNodes))
	m.HandleFunc("GET "+Prefix+"/nodes/{ref}", c.authed(c.handleNode))
	m.HandleFunc("POST "+Prefix+"/nodes/{ref}/{action}", c.authed(c.handleNodeAction))
	m.HandleFunc("GET "+Prefix+"/keys", c.authed(c.handleKeys))
	m.HandleFunc("POST "+Prefix+"/keys", c.authed(c.handleCreateKey))
	m.HandleFunc("POST "+Prefix+"/keys/{id}/revoke", c.authed(c.handleRevokeKey))
	m.HandleFunc("POST "+Prefix+"/tokens", c.authed(c.handleCreateToken))
	m.HandleFunc("POST "+Prefix+"/tokens/{id}/revoke", c.authed(c.handleRevokeToken))
	m.HandleFunc("GET "+Prefix+"/policy", c.authed(c.handlePolicy))
	m.HandleFunc("POST "+Prefix+"/policy", c.authed(c.handleSetPolicy))
	m.HandleFunc("POST "+Prefix+"/policy/check", c.authed(c.handleCheckPolicy))
	m.HandleFunc("POST "+Prefix+"/policy/versions/{v}/restore", c.authed(c.handleRestorePolicy))
	m.HandleFunc("GET "+Prefix+"/access", c.authed(c.handleAccess))
	m.HandleFunc("POST "+Prefix+"/access/{id}/{action}", c.authed(c.handleAccessAction))
	m.HandleFunc("GET "+Prefix+"/audit", c.authed(c.handleAudit))
	m.HandleFunc("GET "+Prefix+"/audit/export", c.authed(c.handleAuditExport))
	m.HandleFunc("GET "+Prefix+"/users", c.authed(c.handleUsers))
	m.HandleFunc("POST "+Prefix+"/users", c.authed(c.handleCreateUser))
	m.HandleFunc("POST "+Prefix+"/users/{name}/role", c.authed(c.handleUserRole))
	m.HandleFunc("POST "+Prefix+"/users/{name}/{action}", c.authed(c.handleUserAction))
	m.HandleFunc("GET "+Prefix+"/account", c.authed(c.handleAccount))
	m.HandleFunc("POST "+Prefix+"/account/password", c.authed(c.handleChangePassword))
	m.HandleFunc("GET "+Prefix+"/events", c.authed(c.handleEvents))
	m.HandleFunc("GET "+Prefix+"/flows", c.authed(c.handleFlows))
	m.HandleFunc("GET "+Prefix+"/topology", c.authed(c.handleTopology))
	m.HandleFunc("GET "+Prefix+"/trust-rules", c.authed(c.handleTrustRules))
	m.HandleFunc("POST "+Prefix+"/trust-rules", c.authed(c.handleCreateTrustRule))
	m.HandleFunc("POST "+Prefix+"/trust-rules/{id}/delete", c.authed(c.handleDeleteTrustRule))
	m.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		plainError(w, http.StatusNotFound, "no such console page")
	})
}

// authed wraps a handler that needs a signed-in session. A GET without
// one is sent to sign in (or to setup while no account exists); a POST
// without one, or without the session's CSRF token, is refused with 403.
func (c *Console) authed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := c.session(r)
		if err != nil && !errors.Is(err, errNoSession) {
			c.log.Error("console: reading session", logErr, err)
			plainError(w, http.StatusInternalServerError, "internal error")
			return
		}
		if r.Method == http.MethodPost {
			if s == nil {
				plainError(w, http.StatusForbidden, "forbidden: not signed in")
				return
			}
			if !validCSRF(r, s) {
				c.log.Info("console POST without a valid CSRF token refused", logUser, s.user, logPath, r.URL.Path, logRemote, r.RemoteAddr)
				plainError(w, http.StatusForbidden, "forbidden: missing or invalid CSRF token (reload the page and try again)")
				return
			}
		}
		if s == nil {
			if r.URL.Path == Prefix+"/events" {
				plainError(w, http.StatusUnauthorized, "not signed in")
				return
			}
			to := Prefix + "/login"
			if none, _ := c.noAccounts(r.Context()); none {
				to = Prefix + "/setup"
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		h(w, r, s)
	}
}

func (c *Console) noAccounts(ctx context.Context) (bool, error) {
	accts, err := c.cfg.Store.ConsoleAccounts(ctx)
	return err == nil && len(accts) == 0, err
}

// sourceIP is the key of per-address limits.
func sourceIP(r *http.Request) string {
	return normalizeHost(r.RemoteAddr)
}

// tooMany answers 429 with Retry-After.
func (c *Console) tooMany(w http.ResponseWriter, r *http.Request, page string, v *view, retry int) {
	w.Header().Set("Retry-After", strconv.Itoa(retry))
	v.Error = "too many failed attempts; try again in " + strconv.Itoa(retry) + " seconds"
	c.render(w, http.StatusTooManyRequests, page, v)
}

type loginData struct {
	Username string
	// OIDC offers sign-in with the identity provider.
	OIDC bool
}

func (c *Console) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	if s, _ := c.session(r); s != nil {
		http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
		return
	}
	if none, _ := c.noAccounts(r.Context()); none {
		http.Redirect(w, r, Prefix+"/setup", http.StatusSeeOther)
		return
	}
	v := newView(r, nil, "Sign in", "")
	v.CSRF = preToken(w, r)
	v.D = loginData{OIDC: c.oidc != nil}
	c.render(w, http.StatusOK, "login", v)
}

func (c *Console) handleLogin(w http.ResponseWriter, r *http.Request) {
	v := newView(r, nil, "Sign in", "")
	v.CSRF = preToken(w, r)
	if !validPreCSRF(r) {
		plainError(w, http.StatusForbidden, "forbidden: missing or invalid CSRF token (reload the page and try again)")
		return
	}
	user := strings.TrimSpace(r.PostFormValue("username"))
	pw := r.PostFormValue("password")
	v.D = loginData{Username: user, OIDC: c.oidc != nil}
	ip := sourceIP(r)
	if ok, retry := c.loginIP.Check(ip); !ok {
		c.tooMany(w, r, "login", v, ratelimit.RetryAfter(retry))
		return
	}
	if ok, retry := c.loginU.Check(strings.ToLower(user)); !ok {
		c.tooMany(w, r, "login", v, ratelimit.RetryAfter(retry))
		return
	}
	ctx := r.Context()
	acct, err := c.cfg.Store.ConsoleAccount(ctx, user)
	hash := acct.Hash
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			c.log.Error("console: reading account", logErr, err)
			plainError(w, http.StatusInternalServerError, "internal error")
			return
		}
		hash = dummyHash
	}
	match, herr := verifyPassword(hash, pw)
	if err != nil || herr != nil || !match || acct.Disabled {
		c.loginIP.Allow(ip)
		c.loginU.Allow(strings.ToLower(user))
		reason := "wrong password"
		switch {
		case err != nil:
			reason = "unknown user"
		case hash == noPasswordHash:
			reason = "account signs in with OIDC only"
		case herr != nil:
			reason = "unreadable stored hash"
		case match && acct.Disabled:
			reason = "account disabled"
		}
		c.log.Info("console sign-in refused", logUser, truncate(user, 64), logErr, reason, logRemote, r.RemoteAddr)
		c.cfg.Store.AppendAudit(ctx, audit.Entry{Actor: "console:" + truncate(user, 64), Action: AuditLoginFailed,
			Target: "console", Summary: map[string]any{"remote": ip, "reason": reason}})
		v.Error = errBadLogin
		c.render(w, http.StatusUnauthorized, "login", v)
		return
	}
	actx := audit.With(ctx, audit.Entry{Actor: acct.Username, Action: AuditLogin, Target: "console",
		Summary: map[string]any{"remote": ip, "role": acct.Role, "method": "password"}})
	if err := c.newSession(actx, w, acct.Username); err != nil {
		c.log.Error("console: creating session", logErr, err)
		plainError(w, http.StatusInternalServerError, "internal error")
		return
	}
	clearCookie(w, preCookie)
	c.log.Info("console sign-in", logUser, acct.Username, logRemote, r.RemoteAddr)
	// Sessions whose browser never came back are swept here: sign-ins
	// are rare, and the sweep is one indexed DELETE.
	now := c.cfg.Now()
	if _, err := c.cfg.Store.PruneConsoleSessions(ctx, now, now.Add(-c.cfg.IdleTimeout)); err != nil {
		c.log.Warn("pruning console sessions", logErr, err)
	}
	http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
}

func (c *Console) handleLogout(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := audit.With(r.Context(), audit.Entry{Actor: s.user, Action: AuditLogout, Target: "console"})
	if err := c.cfg.Store.DeleteConsoleSession(ctx, s.idHash); err != nil && !errors.Is(err, store.ErrNotFound) {
		c.log.Error("console: deleting session", logErr, err)
		plainError(w, http.StatusInternalServerError, "internal error")
		return
	}
	clearCookie(w, sessionCookie)
	redirect(w, r, Prefix+"/login", "signed-out")
}

type setupData struct {
	Username string
}

func (c *Console) handleSetupForm(w http.ResponseWriter, r *http.Request) {
	none, err := c.noAccounts(r.Context())
	if err != nil {
		plainError(w, http.StatusInternalServerError, "internal error")
		return
	}
	if !none {
		http.Redirect(w, r, Prefix+"/login", http.StatusSeeOther)
		return
	}
	v := newView(r, nil, "Set up the console", "")
	v.CSRF = preToken(w, r)
	v.D = setupData{}
	c.render(w, http.StatusOK, "setup", v)
}

// handleSetup creates the first (owner) account, proven by the bootstrap
// API token, and signs it in. It works only while no account exists.
func (c *Console) handleSetup(w http.ResponseWriter, r *http.Request) {
	v := newView(r, nil, "Set up the console", "")
	v.CSRF = preToken(w, r)
	if !validPreCSRF(r) {
		plainError(w, http.StatusForbidden, "forbidden: missing or invalid CSRF token (reload the page and try again)")
		return
	}
	ctx := r.Context()
	if none, err := c.noAccounts(ctx); err != nil || !none {
		plainError(w, http.StatusForbidden, "forbidden: the console is already set up; sign in")
		return
	}
	user := strings.TrimSpace(r.PostFormValue("username"))
	pw, pw2 := r.PostFormValue("password"), r.PostFormValue("password2")
	v.D = setupData{Username: user}
	ip := sourceIP(r)
	if ok, retry := c.loginIP.Check(ip); !ok {
		c.tooMany(w, r, "setup", v, ratelimit.RetryAfter(retry))
		return
	}
	tokID, ok := c.checkBootstrapToken(ctx, r.PostFormValue("token"))
	if !ok {
		c.loginIP.Allow(ip)
		c.log.Info("console setup refused: bad bootstrap token", logRemote, r.RemoteAddr)
		c.cfg.Store.AppendAudit(ctx, audit.Entry{Actor: "console", Action: AuditLoginFailed, Target: "console:setup",
			Summary: map[string]any{"remote": ip, "reason": "invalid bootstrap token"}})
		v.Error = "invalid bootstrap token"
		c.render(w, http.StatusUnauthorized, "setup", v)
		return
	}
	if msg := checkNewAccount(user, pw, pw2); msg != "" {
		v.Error = msg
		c.render(w, http.StatusBadRequest, "setup", v)
		return
	}
	hash, err := hashPassword(pw)
	if err != nil {
		plainError(w, http.StatusInternalServerError, "internal error")
		return
	}
	actx := audit.With(ctx, audit.Entry{Actor: audit.TokenActor(tokID, c.cfg.BootstrapUser), Action: AuditSetup,
		Target: "console:user:" + user, Summary: map[string]any{"role": store.RoleOwner, "remote": ip}})
	created, err := c.cfg.Store.CreateFirstConsoleAccount(actx, store.ConsoleAccount{
		Username: user, Hash: hash, Role: store.RoleOwner, Created: c.cfg.Now()})
	if err != nil {
		c.log.Error("console: creating first account", logErr, err)
		plainError(w, http.StatusInternalServerError, "internal error")
		return
	}
	if !created {
		plainError(w, http.StatusForbidden, "forbidden: the console is already set up; sign in")
		return
	}
	c.log.Info("console set up", logUser, user, logRemote, r.RemoteAddr)
	lctx := audit.With(ctx, audit.Entry{Actor: user, Action: AuditLogin, Target: "console",
		Summary: map[string]any{"remote": ip, "role": store.RoleOwner}})
	if err := c.newSession(lctx, w, user); err != nil {
		plainError(w, http.StatusInternalServerError, "internal error")
		return
	}
	clearCookie(w, preCookie)
	http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
}

// checkBootstrapToken reports whether raw is the bootstrap API token,
// unrevoked and unexpired; its secret is compared in constant time.
func (c *Console) checkBootstrapToken(ctx context.Context, raw string) (string, bool) {
	tok, err := api.ParseToken(raw)
	if err != nil {
		return "", false
	}
	t, hash, err := c.cfg.Store.APIToken(ctx, tok.ID)
	if err != nil {
		subtle.ConstantTimeCompare(store.HashSecret(tok.Secret), make([]byte, 32))
		return "", false
	}
	if subtle.ConstantTimeCompare(hash, store.HashSecret(tok.Secret)) != 1 {
		return "", false
	}
	now := c.cfg.Now()
	if t.User != c.cfg.BootstrapUser || !t.Revoked.IsZero() || (!t.Expires.IsZero() && !now.Before(t.Expires)) {
		return "", false
	}
	return t.ID, true
}

// checkNewAccount returns why a new account's name or password is not
// acceptable, or "".
func checkNewAccount(user, pw, pw2 string) string {
	if !validUsername.MatchString(user) {
		return "the user name must be 1 to 64 letters, digits or . _ @ + - (starting with a letter or digit)"
	}
	if err := checkPassword(pw); err != nil {
		return err.Error()
	}
	if subtle.ConstantTimeCompare([]byte(pw), []byte(pw2)) != 1 {
		return "the two passwords differ"
	}
	return ""
}
