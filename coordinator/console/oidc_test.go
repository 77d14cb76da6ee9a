package console

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/internal/oidctest"
)

const (
	oidcClientID = "latch-console"
	oidcSecret   = "console-client-secret"
)

// oidcEnv is a console whose OIDC provider is a real test issuer over
// HTTPS, with one owner ("olive") and the account alice@example.com bound
// to the issuer's subject "sub-alice".
type oidcEnv struct {
	*env
	iss    *oidctest.Issuer
	client *http.Client // trusts the issuer, follows no redirect
	owner  *browser
}

func newOIDCEnv(t *testing.T) *oidcEnv {
	t.Helper()
	iss, err := oidctest.Start(oidctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { iss.Close() })
	iss.SetClient(oidcClientID, oidcSecret)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: iss.CAPool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	e := newEnv(t, func(c *Config) {
		c.OIDC = &OIDCConfig{Issuer: iss.URL, ClientID: oidcClientID, ClientSecret: oidcSecret, HTTPClient: hc}
	})
	o := &oidcEnv{env: e, iss: iss, client: hc, owner: e.setup()}
	// The owner creates an OIDC-only account bound to sub-alice.
	tok := o.owner.csrf()
	w := o.owner.do(http.MethodPost, Prefix+"/users", url.Values{"csrf": {tok}, "username": {"alice@example.com"},
		"role": {store.RoleAdmin}, "oidc_subject": {"sub-alice"}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("creating the bound account: %d %s", w.Code, w.Body)
	}
	return o
}

// authorize starts a sign-in in b and lets the issuer approve it: it
// returns the callback path and query the issuer sent the browser to.
func (o *oidcEnv) authorize(b *browser) string {
	o.t.Helper()
	w := b.do(http.MethodGet, Prefix+"/login/oidc", nil)
	if w.Code != http.StatusSeeOther {
		o.t.Fatalf("starting the sign-in: %d %s", w.Code, w.Body)
	}
	ck := b.cookies[oidcCookie]
	if ck == nil || ck.SameSite != http.SameSiteLaxMode || !ck.Secure || !ck.HttpOnly || ck.Path != "/" {
		o.t.Fatalf("flow cookie %+v: want Secure, HttpOnly, SameSite=Lax, Path=/", ck)
	}
	to := w.Header().Get("Location")
	u, err := url.Parse(to)
	if err != nil || !strings.HasPrefix(to, o.iss.URL+"/authorize?") {
		o.t.Fatalf("sent to %q, want the issuer's /authorize", to)
	}
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" || q.Get("nonce") == "" {
		o.t.Fatalf("authorize request lacks S256 PKCE, state or nonce: %s", u.RawQuery)
	}
	resp, err := o.client.Get(to)
	if err != nil {
		o.t.Fatal(err)
	}
	resp.Body.Close()
	back := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(back, "https://"+testHost+oidcCallback+"?") {
		o.t.Fatalf("issuer answered %s, Location %q", resp.Status, back)
	}
	return strings.TrimPrefix(back, "https://"+testHost)
}

func TestOIDCSignIn(t *testing.T) {
	tests := []struct {
		name string
		// sub and email are who the issuer signs in.
		sub, email string
		// tamper changes the callback path before the browser follows it.
		tamper func(string) string
		// other follows the callback in another browser (no flow cookie).
		other bool
		// wrongNonce makes the issuer put another nonce in the ID token.
		wrongNonce bool
		want       int
	}{
		{name: "bound subject", sub: "sub-alice", email: "alice@example.com", want: http.StatusOK},
		{name: "unbound subject", sub: "sub-nobody", email: "nobody@example.com", want: http.StatusUnauthorized},
		{name: "same email, another subject", sub: "sub-mallory", email: "alice@example.com", want: http.StatusUnauthorized},
		{name: "subject of the account name", sub: "alice@example.com", email: "alice@example.com", want: http.StatusUnauthorized},
		{name: "wrong state", sub: "sub-alice", want: http.StatusUnauthorized, tamper: func(p string) string {
			return strings.Replace(p, "state=", "state=x", 1)
		}},
		{name: "no state", sub: "sub-alice", want: http.StatusUnauthorized, tamper: func(p string) string {
			u, _ := url.Parse(p)
			q := u.Query()
			q.Del("state")
			u.RawQuery = q.Encode()
			return u.String()
		}},
		{name: "another browser", sub: "sub-alice", other: true, want: http.StatusUnauthorized},
		{name: "wrong nonce", sub: "sub-alice", wrongNonce: true, want: http.StatusUnauthorized},
	}
	o := newOIDCEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o.t = t
			o.iss.SetUser(tt.sub, map[string]any{"email": tt.email, "email_verified": true})
			o.iss.SetWrongNonce(tt.wrongNonce)
			logins, failed := o.auditCount(AuditLogin), o.auditCount(AuditLoginFailed)
			b := o.browser()
			path := o.authorize(b)
			if tt.tamper != nil {
				path = tt.tamper(path)
			}
			flow := b.cookies[oidcCookie]
			if tt.other {
				b = o.browser()
			}
			w := b.do(http.MethodGet, path, nil)
			if w.Code != tt.want {
				t.Fatalf("callback: %d, want %d: %.400s", w.Code, tt.want, w.Body)
			}
			if tt.want != http.StatusOK {
				if b.cookies[sessionCookie] != nil {
					t.Fatal("a refused sign-in set a session cookie")
				}
				if n := o.auditCount(AuditLoginFailed); n != failed+1 {
					t.Errorf("%d new %s records, want 1", n-failed, AuditLoginFailed)
				}
				return
			}
			// Signed in: a same-site page moves on (a redirect would
			// arrive without the Strict cookie), the session works.
			if !strings.Contains(w.Body.String(), `http-equiv="refresh"`) || b.cookies[sessionCookie] == nil {
				t.Fatalf("signed-in answer: %.400s (cookies %v)", w.Body, b.cookies)
			}
			if b.cookies[oidcCookie] != nil {
				t.Error("the flow cookie outlived the sign-in")
			}
			if w := b.do(http.MethodGet, Prefix+"/", nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "alice@example.com") {
				t.Fatalf("overview after OIDC sign-in: %d", w.Code)
			}
			if n := o.auditCount(AuditLogin); n != logins+1 {
				t.Fatalf("%d new %s records, want 1", n-logins, AuditLogin)
			}
			recs, err := o.st.AuditRecords(context.Background(), store.AuditFilter{Action: AuditLogin})
			if err != nil {
				t.Fatal(err)
			}
			last := recs[len(recs)-1]
			if last.Actor != "alice@example.com" || !strings.Contains(last.Summary, `"method":"oidc"`) || !strings.Contains(last.Summary, `"subject":"sub-alice"`) {
				t.Errorf("audit record %+v: want alice@example.com, method oidc, subject sub-alice", last)
			}
			// The callback cannot be replayed, even with the flow cookie.
			// The console refuses it itself: the code never reaches the
			// issuer again.
			again := o.browser()
			again.cookies[oidcCookie] = flow
			refused := o.iss.TokenRefusals()
			if w := again.do(http.MethodGet, path, nil); w.Code != http.StatusUnauthorized || o.iss.TokenRefusals() != refused {
				t.Errorf("replayed callback: %d (issuer refusals %d -> %d), want 401 from the console", w.Code, refused, o.iss.TokenRefusals())
			}
		})
	}
}

// TestOIDCIssuerRequiresPKCEVerifier redeems a code the console's flow
// obtained without, and with a wrong, PKCE verifier: the issuer refuses
// both (so a stolen code is useless without the browser's flow).
func TestOIDCIssuerRequiresPKCEVerifier(t *testing.T) {
	o := newOIDCEnv(t)
	o.iss.SetUser("sub-alice", nil)
	for _, verifier := range []string{"", "wrong-verifier-0123456789012345678901234567890"} {
		path := o.authorize(o.browser())
		u, _ := url.Parse(path)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {u.Query().Get("code")},
			"redirect_uri": {"https://" + testHost + oidcCallback}, "client_id": {oidcClientID}, "client_secret": {oidcSecret}}
		if verifier != "" {
			form.Set("code_verifier", verifier)
		}
		before := o.iss.TokenRefusals()
		resp, err := o.client.PostForm(o.iss.URL+"/token", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || o.iss.TokenRefusals() != before+1 {
			t.Errorf("token with verifier %q: %s, want 400 invalid_grant", verifier, resp.Status)
		}
	}
}

// TestOIDCBindingIsOwnersOnly: only owners bind identities; a subject
// bound to one account cannot be bound to another.
func TestOIDCBindingIsOwnersOnly(t *testing.T) {
	o := newOIDCEnv(t)
	admin := o.signIn("adam", store.RoleAdmin)
	tok := admin.csrf()
	if w := admin.do(http.MethodPost, Prefix+"/users/adam/oidc", url.Values{"csrf": {tok}, "subject": {"sub-alice"}}); w.Code != http.StatusForbidden {
		t.Fatalf("admin binding: %d, want 403", w.Code)
	}
	tok = o.owner.csrf()
	if w := o.owner.do(http.MethodPost, Prefix+"/users/adam/oidc", url.Values{"csrf": {tok}, "subject": {"sub-alice"}}); w.Code != http.StatusConflict {
		t.Fatalf("binding a taken subject: %d, want 409", w.Code)
	}
	if w := o.owner.do(http.MethodPost, Prefix+"/users/adam/oidc", url.Values{"csrf": {tok}, "subject": {"sub-adam"}}); w.Code != http.StatusSeeOther {
		t.Fatalf("binding: %d, want 303: %.300s", w.Code, w.Body)
	}
	// alice signs in only with OIDC: no password matches her account.
	b := o.browser()
	pre := b.pre(Prefix + "/login")
	if w := b.do(http.MethodPost, Prefix+"/login", url.Values{"csrf": {pre}, "username": {"alice@example.com"}, "password": {""}}); w.Code != http.StatusUnauthorized {
		t.Fatalf("password sign-in to an OIDC-only account: %d, want 401", w.Code)
	}
	o.iss.SetUser("sub-adam", nil)
	if w := b.do(http.MethodGet, o.authorize(b), nil); w.Code != http.StatusOK {
		t.Fatalf("adam's OIDC sign-in: %d", w.Code)
	}
}
