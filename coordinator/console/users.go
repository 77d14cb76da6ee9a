package console

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/coordinator/store"
)

type usersData struct {
	Accounts []store.ConsoleAccount
	Roles    []string
	// OIDCIssuer is the configured provider ("" without OIDC sign-in);
	// Bindings maps user names to their OIDC identity.
	OIDCIssuer string
	Bindings   map[string]store.ConsoleOIDCBinding
}

// Console accounts are the console's own data: only owners see or change
// them, checked here (the API does not serve them).
func (c *Console) usersPage(w http.ResponseWriter, r *http.Request, s *session, status int, errMsg string) {
	v := newView(r, s, "Users", "users")
	if s.role != store.RoleOwner {
		v.Error = "only owners manage console users"
		c.render(w, http.StatusForbidden, "users", v)
		return
	}
	accts, err := c.cfg.Store.ConsoleAccounts(r.Context())
	if err != nil {
		c.fail(w, r, "users", v, err)
		return
	}
	d := usersData{Accounts: accts, Roles: roles, Bindings: map[string]store.ConsoleOIDCBinding{}}
	if c.oidc != nil {
		d.OIDCIssuer = c.oidc.cfg.Issuer
	}
	bs, err := c.cfg.Store.ConsoleOIDCBindings(r.Context())
	if err != nil {
		c.fail(w, r, "users", v, err)
		return
	}
	for _, b := range bs {
		d.Bindings[b.Username] = b
	}
	v.D = d
	v.Error = errMsg
	c.render(w, status, "users", v)
}

func (c *Console) handleUsers(w http.ResponseWriter, r *http.Request, s *session) {
	c.usersPage(w, r, s, http.StatusOK, "")
}

func (c *Console) handleCreateUser(w http.ResponseWriter, r *http.Request, s *session) {
	if s.role != store.RoleOwner {
		c.usersPage(w, r, s, http.StatusForbidden, "")
		return
	}
	user := strings.TrimSpace(r.PostFormValue("username"))
	role := r.PostFormValue("role")
	if !slices.Contains(roles, role) {
		c.usersPage(w, r, s, http.StatusBadRequest, "role: want owner, admin, approver or auditor")
		return
	}
	// An account may sign in with the identity provider only: a subject
	// and no password.
	subject := strings.TrimSpace(r.PostFormValue("oidc_subject"))
	pw, pw2 := r.PostFormValue("password"), r.PostFormValue("password2")
	var hash string
	switch {
	case subject != "" && c.oidc == nil:
		c.usersPage(w, r, s, http.StatusBadRequest, "OIDC sign-in is not configured (--console-oidc-issuer)")
		return
	case subject != "" && pw == "" && pw2 == "":
		if !validUsername.MatchString(user) {
			c.usersPage(w, r, s, http.StatusBadRequest, "the user name must be 1 to 64 letters, digits or . _ @ + - (starting with a letter or digit)")
			return
		}
		hash = noPasswordHash
	default:
		if msg := checkNewAccount(user, pw, pw2); msg != "" {
			c.usersPage(w, r, s, http.StatusBadRequest, msg)
			return
		}
		var err error
		if hash, err = hashPassword(pw); err != nil {
			c.usersPage(w, r, s, http.StatusInternalServerError, "internal error")
			return
		}
	}
	if subject != "" {
		if _, err := c.cfg.Store.ConsoleAccountByOIDC(r.Context(), c.oidc.cfg.Issuer, subject); !errors.Is(err, store.ErrNotFound) {
			c.usersPage(w, r, s, http.StatusConflict, "this OIDC subject is bound to another account")
			return
		}
	}
	summary := map[string]any{"role": role}
	if subject != "" {
		summary["oidc_issuer"], summary["oidc_subject"] = c.oidc.cfg.Issuer, subject
	}
	ctx := audit.With(r.Context(), audit.Entry{Actor: s.user, Action: AuditAccountCreate, Target: "console:user:" + user,
		Summary: summary})
	err := c.cfg.Store.CreateConsoleAccount(ctx, store.ConsoleAccount{Username: user, Hash: hash, Role: role, Created: c.cfg.Now()})
	if errors.Is(err, store.ErrAlreadyExists) {
		c.usersPage(w, r, s, http.StatusConflict, "an account named "+user+" exists")
		return
	}
	if err != nil {
		c.usersPage(w, r, s, http.StatusInternalServerError, "internal error")
		return
	}
	if subject != "" {
		// Audited with the creation above.
		err := c.cfg.Store.BindConsoleOIDC(r.Context(), store.ConsoleOIDCBinding{Issuer: c.oidc.cfg.Issuer, Subject: subject, Username: user, Created: c.cfg.Now()})
		if err != nil {
			c.usersPage(w, r, s, http.StatusConflict, "the account was created but not bound: "+err.Error())
			return
		}
	}
	redirect(w, r, Prefix+"/users", "user-created")
}

func (c *Console) handleUserAction(w http.ResponseWriter, r *http.Request, s *session) {
	if s.role != store.RoleOwner {
		c.usersPage(w, r, s, http.StatusForbidden, "")
		return
	}
	name, action := r.PathValue("name"), r.PathValue("action")
	var disable bool
	switch action {
	case "disable":
		disable = true
	case "enable":
	default:
		plainError(w, http.StatusNotFound, "no such account action")
		return
	}
	if disable && name == s.user {
		c.usersPage(w, r, s, http.StatusBadRequest, "you cannot disable your own account")
		return
	}
	c.changeAccount(w, r, s, name, map[string]any{"disabled": disable}, func(ctx context.Context) error {
		return c.cfg.Store.SetConsoleAccountDisabled(ctx, name, disable)
	})
}

// changeAccount makes one audited change to account name (summary goes
// into the audit record) and answers with the users page.
func (c *Console) changeAccount(w http.ResponseWriter, r *http.Request, s *session, name string, summary map[string]any, change func(context.Context) error) {
	ctx := audit.With(r.Context(), audit.Entry{Actor: s.user, Action: AuditAccountChange, Target: "console:user:" + name, Summary: summary})
	if err := change(ctx); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, store.ErrNotFound) {
			status = http.StatusNotFound
		}
		c.usersPage(w, r, s, status, "no account "+name)
		return
	}
	redirect(w, r, Prefix+"/users", "user-changed")
}

// handleUserRole changes another account's role (owners only). Owners
// cannot change their own role, so the last owner cannot demote itself.
func (c *Console) handleUserRole(w http.ResponseWriter, r *http.Request, s *session) {
	if s.role != store.RoleOwner {
		c.usersPage(w, r, s, http.StatusForbidden, "")
		return
	}
	name, role := r.PathValue("name"), r.PostFormValue("role")
	if !slices.Contains(roles, role) {
		c.usersPage(w, r, s, http.StatusBadRequest, "role: want owner, admin, approver or auditor")
		return
	}
	if name == s.user {
		c.usersPage(w, r, s, http.StatusBadRequest, "you cannot change your own role")
		return
	}
	c.changeAccount(w, r, s, name, map[string]any{"role": role}, func(ctx context.Context) error {
		return c.cfg.Store.SetConsoleRole(ctx, name, role)
	})
}

func (c *Console) handleAccount(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, http.StatusOK, "account", newView(r, s, "Your account", "account"))
}

// handleChangePassword changes the signed-in user's password, proven by
// the current one (rate-limited like sign-in), and ends the user's other
// sessions.
func (c *Console) handleChangePassword(w http.ResponseWriter, r *http.Request, s *session) {
	v := newView(r, s, "Your account", "account")
	key := strings.ToLower(s.user)
	if ok, retry := c.loginU.Check(key); !ok {
		c.tooMany(w, r, "account", v, ratelimit.RetryAfter(retry))
		return
	}
	ctx := r.Context()
	acct, err := c.cfg.Store.ConsoleAccount(ctx, s.user)
	if err != nil {
		c.fail(w, r, "account", v, err)
		return
	}
	if ok, err := verifyPassword(acct.Hash, r.PostFormValue("current")); err != nil || !ok {
		c.loginU.Allow(key)
		v.Error = "the current password is wrong"
		c.render(w, http.StatusUnauthorized, "account", v)
		return
	}
	pw := r.PostFormValue("password")
	if msg := checkNewAccount(s.user, pw, r.PostFormValue("password2")); msg != "" {
		v.Error = msg
		c.render(w, http.StatusBadRequest, "account", v)
		return
	}
	hash, err := hashPassword(pw)
	if err != nil {
		c.fail(w, r, "account", v, err)
		return
	}
	actx := audit.With(ctx, audit.Entry{Actor: s.user, Action: AuditAccountChange, Target: "console:user:" + s.user,
		Summary: map[string]any{"password_changed": true}})
	if err := c.cfg.Store.SetConsolePassword(actx, s.user, hash, s.idHash); err != nil {
		c.fail(w, r, "account", v, err)
		return
	}
	redirect(w, r, Prefix+"/account", "password-changed")
}

// handleUserOIDC binds an account to a subject of the configured OIDC
// provider, or with an empty subject removes its binding (owners only).
func (c *Console) handleUserOIDC(w http.ResponseWriter, r *http.Request, s *session) {
	if s.role != store.RoleOwner {
		c.usersPage(w, r, s, http.StatusForbidden, "")
		return
	}
	if c.oidc == nil {
		c.usersPage(w, r, s, http.StatusBadRequest, "OIDC sign-in is not configured (--console-oidc-issuer)")
		return
	}
	name := r.PathValue("name")
	subject := strings.TrimSpace(r.PostFormValue("subject"))
	if len(subject) > 255 {
		c.usersPage(w, r, s, http.StatusBadRequest, "the subject is longer than 255 characters")
		return
	}
	ctx := audit.With(r.Context(), audit.Entry{Actor: s.user, Action: AuditAccountChange, Target: "console:user:" + name,
		Summary: map[string]any{"oidc_issuer": c.oidc.cfg.Issuer, "oidc_subject": subject}})
	var err error
	if subject == "" {
		err = c.cfg.Store.UnbindConsoleOIDC(ctx, name)
	} else {
		err = c.cfg.Store.BindConsoleOIDC(ctx, store.ConsoleOIDCBinding{Issuer: c.oidc.cfg.Issuer, Subject: subject, Username: name, Created: c.cfg.Now()})
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.usersPage(w, r, s, http.StatusNotFound, "no account "+name+" (or it has no binding)")
	case errors.Is(err, store.ErrAlreadyExists):
		c.usersPage(w, r, s, http.StatusConflict, "this OIDC subject is bound to another account")
	case err != nil:
		c.usersPage(w, r, s, http.StatusInternalServerError, "internal error")
	default:
		redirect(w, r, Prefix+"/users", "user-changed")
	}
}
