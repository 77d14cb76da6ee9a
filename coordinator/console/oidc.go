package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/coordinator/store"
)

// OIDCConfig turns on sign-in with an OpenID Connect provider: the
// authorization code flow with PKCE (S256), state and nonce. A provider's
// user signs in only as the account an owner bound to its issuer and
// subject; email and other claims never select an account.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL (discovery is fetched from it
	// on the first sign-in, then kept). Required.
	Issuer string
	// ClientID and ClientSecret are the console's registration at the
	// provider. ClientID is required.
	ClientID, ClientSecret string
	// RedirectURL is the callback registered at the provider; empty
	// derives https://<Host>/console/oidc/callback from each request.
	RedirectURL string
	// HTTPClient talks to the provider (tests give one trusting their
	// CA); nil uses http.DefaultClient.
	HTTPClient *http.Client
}

// Sign-in flow limits.
const (
	// oidcFlowTTL is how long a started sign-in may take at the provider.
	oidcFlowTTL = 10 * time.Minute
	// maxOIDCFlows bounds the sign-ins in progress held in memory; past
	// it the oldest is dropped.
	maxOIDCFlows = 4096
	// oidcCookie carries the ID of the browser's sign-in in progress. It
	// is SameSite=Lax, unlike the session cookie: the provider's redirect
	// back is a cross-site navigation, which Strict cookies do not join.
	oidcCookie = "__Host-latch_oidc"
	// oidcCallback is the callback path.
	oidcCallback = Prefix + "/oidc/callback"
)

// oidcFlow is one sign-in in progress, kept server-side under the hash
// of the random ID in the browser's oidcCookie.
type oidcFlow struct {
	state, nonce, verifier, redirect string
	expires                          time.Time
}

// oidcLogin is the OIDC sign-in state of a console.
type oidcLogin struct {
	cfg OIDCConfig

	mu       sync.Mutex // guards the fields below
	provider *oidc.Provider
	flows    map[[32]byte]*oidcFlow
	order    [][32]byte // flows' keys, oldest first (some may be gone)
}

// ctx is ctx carrying the provider HTTP client.
func (o *oidcLogin) ctx(ctx context.Context) context.Context {
	if o.cfg.HTTPClient != nil {
		return oidc.ClientContext(ctx, o.cfg.HTTPClient)
	}
	return ctx
}

// discover returns the provider, fetching its discovery document once.
func (o *oidcLogin) discover(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	p := o.provider
	o.mu.Unlock()
	if p != nil {
		return p, nil
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(o.ctx(dctx), o.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discovering OIDC provider %s: %w", o.cfg.Issuer, err)
	}
	o.mu.Lock()
	o.provider = p
	o.mu.Unlock()
	return p, nil
}

func (o *oidcLogin) oauth(p *oidc.Provider, redirect string) *oauth2.Config {
	return &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: redirect, Scopes: []string{oidc.ScopeOpenID}}
}

// put stores f under the hash of id, dropping expired and excess flows.
func (o *oidcLogin) put(id []byte, f *oidcFlow, now time.Time) {
	k := sha256.Sum256(id)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.flows == nil {
		o.flows = map[[32]byte]*oidcFlow{}
	}
	for len(o.order) > 0 {
		old, ok := o.flows[o.order[0]]
		if ok && now.Before(old.expires) && len(o.flows) < maxOIDCFlows {
			break
		}
		delete(o.flows, o.order[0])
		o.order = o.order[1:]
	}
	o.flows[k] = f
	o.order = append(o.order, k)
}

// take removes and returns the flow of id: a flow is used at most once.
func (o *oidcLogin) take(id []byte) *oidcFlow {
	k := sha256.Sum256(id)
	o.mu.Lock()
	defer o.mu.Unlock()
	f := o.flows[k]
	delete(o.flows, k)
	return f
}

func randomString() (string, []byte) {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b), b
}

// handleOIDCStart begins a sign-in: it keeps the state, nonce and PKCE
// verifier server-side and sends the browser to the provider.
func (c *Console) handleOIDCStart(w http.ResponseWriter, r *http.Request) {
	o := c.oidc
	if o == nil {
		plainError(w, http.StatusNotFound, "OIDC sign-in is not configured")
		return
	}
	p, err := o.discover(r.Context())
	if err != nil {
		c.log.Error("console: OIDC sign-in", logErr, err)
		plainError(w, http.StatusBadGateway, "the identity provider cannot be reached; try again later")
		return
	}
	redirect := o.cfg.RedirectURL
	if redirect == "" {
		redirect = "https://" + r.Host + oidcCallback
	}
	idStr, id := randomString()
	state, _ := randomString()
	nonce, _ := randomString()
	f := &oidcFlow{state: state, nonce: nonce, verifier: oauth2.GenerateVerifier(), redirect: redirect,
		expires: c.cfg.Now().Add(oidcFlowTTL)}
	o.put(id, f, c.cfg.Now())
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: idStr, Path: "/", MaxAge: int(oidcFlowTTL / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, o.oauth(p, redirect).AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(f.verifier)), http.StatusSeeOther)
}

// handleOIDCCallback finishes a sign-in: the state must match the
// browser's flow, the code is redeemed with the PKCE verifier, the ID
// token is verified (signature, issuer, audience, expiry, nonce) and its
// issuer and subject must be bound to an enabled account.
func (c *Console) handleOIDCCallback(w http.ResponseWriter, r *http.Request) {
	o := c.oidc
	if o == nil {
		plainError(w, http.StatusNotFound, "OIDC sign-in is not configured")
		return
	}
	ctx := r.Context()
	ip := sourceIP(r)
	refuse := func(reason string, err error) {
		c.loginIP.Allow(ip)
		c.log.Info("console OIDC sign-in refused", logErr, reason, "detail", errString(err), logRemote, r.RemoteAddr)
		c.cfg.Store.AppendAudit(ctx, audit.Entry{Actor: "console:oidc", Action: AuditLoginFailed, Target: "console",
			Summary: map[string]any{"remote": ip, "reason": reason, "method": "oidc"}})
		clearLaxCookie(w, oidcCookie)
		v := newView(r, nil, "Sign in", "")
		v.CSRF = preToken(w, r)
		v.D = loginData{OIDC: true}
		v.Error = "sign-in with the identity provider failed: " + reason
		c.render(w, http.StatusUnauthorized, "login", v)
	}
	if ok, retry := c.loginIP.Check(ip); !ok {
		v := newView(r, nil, "Sign in", "")
		v.D = loginData{OIDC: true}
		c.tooMany(w, r, "login", v, ratelimit.RetryAfter(retry))
		return
	}
	ck, err := r.Cookie(oidcCookie)
	var f *oidcFlow
	if err == nil {
		if id, derr := base64.RawURLEncoding.DecodeString(ck.Value); derr == nil && len(id) == 32 {
			f = o.take(id)
		}
	}
	q := r.URL.Query()
	switch {
	case f == nil || !c.cfg.Now().Before(f.expires):
		refuse("no sign-in in progress in this browser (or it took too long)", nil)
		return
	case q.Get("state") == "" || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.state)) != 1:
		refuse("the state does not match this browser's sign-in", nil)
		return
	case q.Get("error") != "":
		refuse("the identity provider said "+truncate(q.Get("error"), 64), nil)
		return
	case q.Get("code") == "":
		refuse("no authorization code", nil)
		return
	}
	p, err := o.discover(ctx)
	if err != nil {
		refuse("the identity provider cannot be reached", err)
		return
	}
	xctx, cancel := context.WithTimeout(o.ctx(ctx), 15*time.Second)
	defer cancel()
	tok, err := o.oauth(p, f.redirect).Exchange(xctx, q.Get("code"), oauth2.VerifierOption(f.verifier))
	if err != nil {
		refuse("the identity provider refused the code", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		refuse("the identity provider sent no ID token", nil)
		return
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID, Now: c.cfg.Now}).Verify(xctx, raw)
	if err != nil {
		refuse("the ID token is not valid", err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.nonce)) != 1 {
		refuse("the ID token's nonce does not match", nil)
		return
	}
	acct, err := c.cfg.Store.ConsoleAccountByOIDC(ctx, idt.Issuer, idt.Subject)
	if errors.Is(err, store.ErrNotFound) {
		refuse("no console account is bound to this identity (an owner binds it on the Users page)", fmt.Errorf("issuer %s subject %s", idt.Issuer, truncate(idt.Subject, 100)))
		return
	}
	if err != nil {
		c.log.Error("console: reading account by OIDC identity", logErr, err)
		plainError(w, http.StatusInternalServerError, "internal error")
		return
	}
	if acct.Disabled {
		refuse("the account is disabled", nil)
		return
	}
	actx := audit.With(ctx, audit.Entry{Actor: acct.Username, Action: AuditLogin, Target: "console",
		Summary: map[string]any{"remote": ip, "role": acct.Role, "method": "oidc", "issuer": idt.Issuer, "subject": idt.Subject}})
	if err := c.newSession(actx, w, acct.Username); err != nil {
		c.log.Error("console: creating session", logErr, err)
		plainError(w, http.StatusInternalServerError, "internal error")
		return
	}
	clearLaxCookie(w, oidcCookie)
	c.log.Info("console sign-in", logUser, acct.Username, "method", "oidc", logRemote, r.RemoteAddr)
	// A same-site page moves on to the console: a redirect answering this
	// cross-site navigation would arrive without the new Strict cookie.
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	continuePage.Execute(w, Prefix+"/")
}

// continuePage sends the browser on with a meta refresh (the CSP forbids
// inline script) and a link.
var continuePage = template.Must(template.New("continue").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={{.}}"><title>Signed in · Latch</title></head>
<body><p id="signed-in">Signed in. <a href="{{.}}">Continue to the console</a>.</p></body></html>
`))

// clearLaxCookie deletes a SameSite=Lax cookie.
func clearLaxCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
