package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/netmap"
	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

const testHost = "coord.example:8443"

// env is a console over a real store and API handler, called in-process,
// with a clock the test moves.
type env struct {
	t     *testing.T
	st    *store.SQLite
	con   *Console
	h     http.Handler
	token string // the bootstrap API token

	mu  sync.Mutex
	now time.Time
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "latch.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Init(ctx, "test.internal"); err != nil {
		t.Fatal(err)
	}
	c, _, err := ca.LoadOrCreate(dir, "test.internal", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hub := netmap.NewHub(netmap.HubConfig{Source: &netmap.StoreSource{Store: st}})
	t.Cleanup(hub.Close)
	off := ratelimit.Limit{Rate: -1}
	e := &env{t: t, st: st, now: time.Now()}
	apiSrv := api.New(api.Config{Store: st, CA: c, Hub: hub, NodeCertLifetime: time.Hour, Keepalive: time.Hour, Now: e.clock,
		RateLimits: api.RateLimits{EnrollPerIP: off, EnrollPerKey: off, AuthFailuresPerIP: off}})
	tok := api.NewToken()
	if _, err := st.CreateBootstrapToken(ctx, store.APIToken{ID: tok.ID, User: "bootstrap", Scopes: []string{wire.ScopeAdmin}, Created: e.clock()},
		store.HashSecret(tok.Secret)); err != nil {
		t.Fatal(err)
	}
	e.token = tok.String()
	cfg := Config{API: apiSrv, Store: st, Hosts: []string{"coord.example", "127.0.0.1"}, BootstrapUser: "bootstrap", Now: e.clock,
		LoginPerIP: ratelimit.Limit{Rate: -1}, LoginPerUser: ratelimit.Limit{Rate: -1}}
	if mod != nil {
		mod(&cfg)
	}
	if e.con, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.con.Close)
	e.h = Mount(apiSrv, e.con)
	return e
}

// browser is one client's cookies.
type browser struct {
	e       *env
	cookies map[string]*http.Cookie
	ip      string
}

func (e *env) browser() *browser {
	return &browser{e: e, cookies: map[string]*http.Cookie{}, ip: "192.0.2.10"}
}

type reqOpt func(*http.Request)

func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

func (b *browser) do(method, path string, form url.Values, opts ...reqOpt) *httptest.ResponseRecorder {
	b.e.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	r := httptest.NewRequest(method, "https://"+testHost+path, body)
	r.RemoteAddr = b.ip + ":50000"
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost {
		r.Header.Set("Origin", "https://"+testHost)
	}
	for _, c := range b.cookies {
		r.AddCookie(c)
	}
	for _, o := range opts {
		o(r)
	}
	w := httptest.NewRecorder()
	b.e.h.ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	return w
}

// pre fetches a pre-session form and returns its CSRF token.
func (b *browser) pre(path string) string {
	b.e.t.Helper()
	b.do(http.MethodGet, path, nil)
	c := b.cookies[preCookie]
	if c == nil {
		b.e.t.Fatalf("GET %s set no %s cookie", path, preCookie)
	}
	return c.Value
}

// csrf returns the signed-in session's CSRF token.
func (b *browser) csrf() string {
	c := b.cookies[sessionCookie]
	if c == nil {
		b.e.t.Fatal("not signed in")
	}
	s, err := b.e.con.session(func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "https://"+testHost+"/", nil)
		r.AddCookie(c)
		return r
	}())
	if err != nil {
		b.e.t.Fatalf("session: %v", err)
	}
	return s.csrf
}

const ownerPassword = "correct horse battery"

// setup creates the owner through /console/setup and returns its browser.
func (e *env) setup() *browser {
	e.t.Helper()
	b := e.browser()
	tok := b.pre(Prefix + "/setup")
	w := b.do(http.MethodPost, Prefix+"/setup", url.Values{"csrf": {tok}, "token": {e.token}, "username": {"olive"},
		"password": {ownerPassword}, "password2": {ownerPassword}})
	if w.Code != http.StatusSeeOther || b.cookies[sessionCookie] == nil {
		e.t.Fatalf("setup: %d %s", w.Code, w.Body)
	}
	return b
}

// account creates an account directly and signs it in.
func (e *env) signIn(user, role string) *browser {
	e.t.Helper()
	hash, err := hashPassword(ownerPassword)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.CreateConsoleAccount(context.Background(), store.ConsoleAccount{Username: user, Hash: hash, Role: role, Created: e.clock()}); err != nil {
		e.t.Fatal(err)
	}
	b := e.browser()
	tok := b.pre(Prefix + "/login")
	w := b.do(http.MethodPost, Prefix+"/login", url.Values{"csrf": {tok}, "username": {user}, "password": {ownerPassword}})
	if w.Code != http.StatusSeeOther || b.cookies[sessionCookie] == nil {
		e.t.Fatalf("sign-in of %s: %d %s", user, w.Code, w.Body)
	}
	return b
}

func (e *env) auditCount(action string) int {
	e.t.Helper()
	recs, err := e.st.AuditRecords(context.Background(), store.AuditFilter{Action: action})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(recs)
}

func (e *env) keyCount() int {
	e.t.Helper()
	keys, err := e.st.EnrollmentKeys(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return len(keys)
}

func TestSetupNeedsTheBootstrapTokenAndWorksOnce(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser()
	if w := b.do(http.MethodGet, Prefix+"/", nil); w.Code != http.StatusSeeOther || w.Header().Get("Location") != Prefix+"/setup" {
		t.Fatalf("no account yet: GET / = %d to %q, want 303 to setup", w.Code, w.Header().Get("Location"))
	}
	tok := b.pre(Prefix + "/setup")
	other := api.NewToken().String()
	for _, bad := range []string{"", "latchtok_nonsense", other, e.token + "x"} {
		w := b.do(http.MethodPost, Prefix+"/setup", url.Values{"csrf": {tok}, "token": {bad}, "username": {"mallory"},
			"password": {ownerPassword}, "password2": {ownerPassword}})
		if w.Code != http.StatusUnauthorized {
			t.Errorf("setup with token %q: %d, want 401", bad, w.Code)
		}
	}
	if accts, _ := e.st.ConsoleAccounts(context.Background()); len(accts) != 0 {
		t.Fatalf("refused setups created accounts: %+v", accts)
	}
	e.setup()
	if n := e.auditCount(AuditSetup); n != 1 {
		t.Errorf("%d %s records, want 1", n, AuditSetup)
	}
	// Once an account exists, setup is closed even with the right token.
	b2 := e.browser()
	tok2 := b2.pre(Prefix + "/login")
	w := b2.do(http.MethodPost, Prefix+"/setup", url.Values{"csrf": {tok2}, "token": {e.token}, "username": {"mallory"},
		"password": {ownerPassword}, "password2": {ownerPassword}})
	if w.Code != http.StatusForbidden {
		t.Errorf("second setup: %d, want 403", w.Code)
	}
	if _, err := e.st.ConsoleAccount(context.Background(), "mallory"); err == nil {
		t.Error("second setup created an account")
	}
}

func TestSessionCookieIsHostOnlySecureHttpOnlyStrict(t *testing.T) {
	e := newEnv(t, nil)
	b := e.setup()
	c := b.cookies[sessionCookie]
	if !strings.HasPrefix(c.Name, "__Host-") || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
		t.Errorf("session cookie %+v", c)
	}
	if len(c.Value) != 43 {
		t.Errorf("session ID is %d characters, want 43 (256 bits)", len(c.Value))
	}
}

func TestSignInFailsWithOneMessageAndIsAudited(t *testing.T) {
	e := newEnv(t, nil)
	e.setup()
	b := e.browser()
	tok := b.pre(Prefix + "/login")
	for _, tt := range []struct{ name, user, pw string }{
		{"unknown-user", "nobody", ownerPassword},
		{"wrong-password", "olive", "wrong password!"},
	} {
		w := b.do(http.MethodPost, Prefix+"/login", url.Values{"csrf": {tok}, "username": {tt.user}, "password": {tt.pw}})
		if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), errBadLogin) || b.cookies[sessionCookie] != nil {
			t.Errorf("%s: %d, session %v", tt.name, w.Code, b.cookies[sessionCookie] != nil)
		}
	}
	if n := e.auditCount(AuditLoginFailed); n != 2 {
		t.Errorf("%d %s records, want 2", n, AuditLoginFailed)
	}
}

func TestSignInIsRateLimitedPerAddressAndPerUser(t *testing.T) {
	tests := []struct {
		name string
		// change makes the next attempt come from another address or
		// name another user.
		otherIP bool
	}{
		{"per-user", true},
		{"per-ip", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				if tt.otherIP {
					c.LoginPerUser = ratelimit.Limit{Rate: 0.001, Burst: 3}
				} else {
					c.LoginPerIP = ratelimit.Limit{Rate: 0.001, Burst: 3}
				}
			})
			e.setup()
			b := e.browser()
			tok := b.pre(Prefix + "/login")
			user := func(i int) string {
				if tt.otherIP {
					return "olive"
				}
				return "user" + string(rune('a'+i))
			}
			for i := range 3 {
				if tt.otherIP {
					b.ip = "192.0.2." + string(rune('1'+i))
				}
				if w := b.do(http.MethodPost, Prefix+"/login", url.Values{"csrf": {tok}, "username": {user(i)}, "password": {"wrong password!"}}); w.Code != http.StatusUnauthorized {
					t.Fatalf("attempt %d: %d, want 401", i, w.Code)
				}
			}
			if tt.otherIP {
				b.ip = "192.0.2.9"
			}
			// Even the right password is refused once the bucket is empty.
			w := b.do(http.MethodPost, Prefix+"/login", url.Values{"csrf": {tok}, "username": {"olive"}, "password": {ownerPassword}})
			if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || b.cookies[sessionCookie] != nil {
				t.Fatalf("after the burst: %d (Retry-After %q), want 429", w.Code, w.Header().Get("Retry-After"))
			}
		})
	}
}

// Every state-changing console request needs the session's CSRF token,
// the console's own Origin and an allowed Host; refusals change nothing.
func TestChangesNeedCSRFTokenSameOriginAndKnownHost(t *testing.T) {
	e := newEnv(t, nil)
	b := e.setup()
	good := b.csrf()
	tests := []struct {
		name   string
		form   url.Values
		opts   []reqOpt
		status int
	}{
		{"no-csrf-token", url.Values{"description": {"x"}}, nil, http.StatusForbidden},
		{"wrong-csrf-token", url.Values{"csrf": {"A" + good[1:]}, "description": {"x"}}, nil, http.StatusForbidden},
		{"other-sessions-token", url.Values{"csrf": {csrfToken(make([]byte, 32))}}, nil, http.StatusForbidden},
		{"cross-origin", url.Values{"csrf": {good}}, []reqOpt{withHeader("Origin", "https://evil.example")}, http.StatusForbidden},
		{"null-origin", url.Values{"csrf": {good}}, []reqOpt{withHeader("Origin", "null")}, http.StatusForbidden},
		{"null-origin-cross-site", url.Values{"csrf": {good}}, []reqOpt{withHeader("Origin", "null"), withHeader("Sec-Fetch-Site", "cross-site")}, http.StatusForbidden},
		{"right-origin-cross-site-fetch", url.Values{"csrf": {good}}, []reqOpt{withHeader("Sec-Fetch-Site", "same-site")}, http.StatusForbidden},
		// What Chromium sends for a form post from a no-referrer page.
		{"null-origin-same-origin-fetch", url.Values{"csrf": {good}, "description": {"ok"}}, []reqOpt{withHeader("Origin", "null"), withHeader("Sec-Fetch-Site", "same-origin")}, http.StatusOK},
		{"cross-site-fetch", url.Values{"csrf": {good}}, []reqOpt{func(r *http.Request) { r.Header.Del("Origin"); r.Header.Set("Sec-Fetch-Site", "cross-site") }}, http.StatusForbidden},
		{"foreign-host", url.Values{"csrf": {good}}, []reqOpt{func(r *http.Request) {
			r.Host = "evil.example:8443"
			r.Header.Set("Origin", "https://evil.example:8443")
		}}, http.StatusForbidden},
		{"valid", url.Values{"csrf": {good}, "description": {"ok"}}, nil, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.keyCount()
			w := b.do(http.MethodPost, Prefix+"/keys", tt.form, tt.opts...)
			if w.Code != tt.status {
				t.Fatalf("POST keys: %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			created := e.keyCount() - before
			if want := map[bool]int{true: 1, false: 0}[tt.status == http.StatusOK]; created != want {
				t.Errorf("%d keys created, want %d", created, want)
			}
		})
	}
	// A GET for a foreign host (DNS rebinding) is refused too, even with a
	// valid session.
	w := b.do(http.MethodGet, Prefix+"/nodes", nil, func(r *http.Request) { r.Host = "rebind.evil.example" })
	if w.Code != http.StatusForbidden {
		t.Errorf("GET with a foreign Host: %d, want 403", w.Code)
	}
	if w := b.do(http.MethodGet, Prefix+"/nodes", nil, withHeader("Origin", "https://evil.example")); w.Code != http.StatusForbidden {
		t.Errorf("cross-origin GET (a script of another site): %d, want 403", w.Code)
	}
	if w := b.do(http.MethodGet, Prefix+"/nodes", nil, func(r *http.Request) { r.Host = "127.0.0.1:8443" }); w.Code != http.StatusOK {
		t.Errorf("GET with an allowed IP Host: %d, want 200", w.Code)
	}
	// Sign-in's form has its own (pre-session) token.
	b2 := e.browser()
	b2.pre(Prefix + "/login")
	if w := b2.do(http.MethodPost, Prefix+"/login", url.Values{"username": {"olive"}, "password": {ownerPassword}}); w.Code != http.StatusForbidden {
		t.Errorf("sign-in without its CSRF token: %d, want 403", w.Code)
	}
}

// An auditor's session carries read scopes only: whatever it POSTs, with
// a valid CSRF token, the API refuses (403, audited as the user).
func TestAuditorCannotChangeAnythingEvenByCraftedRequests(t *testing.T) {
	e := newEnv(t, nil)
	e.setup()
	b := e.signIn("audrey", store.RoleAuditor)
	csrf := b.csrf()
	ctx := context.Background()
	if w := b.do(http.MethodGet, Prefix+"/nodes", nil); w.Code != http.StatusOK {
		t.Fatalf("auditor reads nodes: %d", w.Code)
	}
	if w := b.do(http.MethodGet, Prefix+"/audit", nil); w.Code != http.StatusOK {
		t.Fatalf("auditor reads audit: %d", w.Code)
	}
	deniedBefore := e.auditCount(audit.TokenDenied)
	tests := []struct {
		path string
		form url.Values
	}{
		{"/keys", url.Values{"description": {"x"}}},
		{"/tokens", url.Values{"user": {"audrey"}, "scope": {"admin"}}},
		{"/policy", url.Values{"op": {"save"}, "source": {`{"acls": []}`}}},
		{"/nodes/anything/revoke", url.Values{"confirm": {"yes"}}},
		{"/nodes/anything/delete", url.Values{"confirm": {"yes"}}},
		{"/nodes/anything/quarantine", url.Values{"reason": {"x"}}},
		{"/access/someid/approve", url.Values{"reason": {"x"}}},
		{"/policy/versions/1/restore", nil},
		{"/users", url.Values{"username": {"eve"}, "role": {"owner"}, "password": {ownerPassword}, "password2": {ownerPassword}}},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.path, "/", "_"), func(t *testing.T) {
			form := url.Values{"csrf": {csrf}}
			for k, v := range tt.form {
				form[k] = v
			}
			w := b.do(http.MethodPost, Prefix+tt.path, form)
			if w.Code != http.StatusForbidden {
				t.Errorf("auditor POST %s: %d, want 403: %.200s", tt.path, w.Code, w.Body)
			}
		})
	}
	if n := e.keyCount(); n != 0 {
		t.Errorf("%d keys exist after refused creates", n)
	}
	if toks, _ := e.st.APITokens(ctx); len(toks) != 1 {
		t.Errorf("%d tokens, want only the bootstrap token", len(toks))
	}
	if _, err := e.st.CurrentPolicy(ctx); err == nil {
		t.Error("a policy was saved by an auditor")
	}
	if _, err := e.st.ConsoleAccount(ctx, "eve"); err == nil {
		t.Error("an auditor created an account")
	}
	recs, err := e.st.AuditRecords(ctx, store.AuditFilter{Action: audit.TokenDenied})
	if err != nil || len(recs)-deniedBefore < 4 {
		t.Fatalf("%d refusals audited (%v), want at least 4", len(recs)-deniedBefore, err)
	}
	for _, r := range recs[deniedBefore:] {
		if !strings.Contains(r.Actor, "audrey") {
			t.Errorf("refusal audited with actor %q, want the user", r.Actor)
		}
	}
}

func TestSessionsExpireWhenIdleAndAtTheirLifetime(t *testing.T) {
	tests := []struct {
		name string
		// keepBusy requests a page every step, so only the absolute
		// lifetime can end the session.
		keepBusy bool
		step     time.Duration
		steps    int
	}{
		{"idle", false, 61 * time.Minute, 1},
		{"absolute", true, 50 * time.Minute, 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.IdleTimeout = time.Hour; c.SessionLifetime = 12 * time.Hour })
			b := e.setup()
			ended := false
			for i := 0; i < tt.steps && !ended; i++ {
				e.advance(tt.step)
				w := b.do(http.MethodGet, Prefix+"/nodes", nil)
				switch {
				case w.Code == http.StatusSeeOther && w.Header().Get("Location") == Prefix+"/login":
					ended = true
					if elapsed := tt.step * time.Duration(i+1); tt.keepBusy && elapsed < 12*time.Hour {
						t.Fatalf("busy session ended after %v, before its 12h lifetime", elapsed)
					}
				case w.Code != http.StatusOK:
					t.Fatalf("GET nodes: %d", w.Code)
				}
			}
			if !ended {
				t.Fatal("the session did not end")
			}
		})
	}
}

func TestSignOutDeletesTheSession(t *testing.T) {
	e := newEnv(t, nil)
	b := e.setup()
	old := *b.cookies[sessionCookie]
	if w := b.do(http.MethodPost, Prefix+"/logout", url.Values{"csrf": {b.csrf()}}); w.Code != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", w.Code)
	}
	if b.cookies[sessionCookie] != nil {
		t.Error("sign-out left the session cookie")
	}
	// The old cookie, replayed, no longer signs in.
	b.cookies[sessionCookie] = &old
	if w := b.do(http.MethodGet, Prefix+"/nodes", nil); w.Code != http.StatusSeeOther {
		t.Errorf("replayed cookie after sign-out: %d, want 303 to sign-in", w.Code)
	}
	if n := e.auditCount(AuditLogout); n != 1 {
		t.Errorf("%d %s records, want 1", n, AuditLogout)
	}
}

func TestEveryResponseCarriesTheSecurityHeaders(t *testing.T) {
	e := newEnv(t, nil)
	b := e.setup()
	for _, path := range []string{Prefix + "/", Prefix + "/login", Prefix + "/static/console.js", Prefix + "/nope"} {
		w := b.do(http.MethodGet, path, nil)
		h := w.Header()
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'", "script-src 'self'", "style-src 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP allows inline code: %q", path, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", path, h)
		}
	}
	// No inline script or style in the pages (the CSP would block it).
	w := b.do(http.MethodGet, Prefix+"/", nil)
	for _, bad := range []string{"<script>", "style=", "onclick", "<style"} {
		if strings.Contains(w.Body.String(), bad) {
			t.Errorf("overview page contains %q", bad)
		}
	}
}

func TestPagesRenderForEveryRole(t *testing.T) {
	e := newEnv(t, nil)
	e.setup()
	pages := []string{"/", "/nodes", "/keys", "/policy", "/access", "/audit", "/audit?verify=1", "/users", "/flows", "/flows?verdict=drop",
		"/trust-rules", "/topology", "/account"}
	want := map[string]map[string]int{
		store.RoleOwner:    {},
		store.RoleAdmin:    {"/users": http.StatusForbidden},
		store.RoleApprover: {"/keys": http.StatusForbidden, "/users": http.StatusForbidden, "/trust-rules": http.StatusForbidden},
		// The topology reads the pairs listing (nodes:read): every role
		// may see it.
		store.RoleAuditor: {"/keys": http.StatusForbidden, "/access": http.StatusForbidden, "/users": http.StatusForbidden,
			"/trust-rules": http.StatusForbidden},
	}
	if err := e.call(e.signIn("setter", store.RoleAdmin), Prefix+"/policy", url.Values{"op": {"save"}, "source": {`{"rules": []}`}}); err != nil {
		t.Fatal(err)
	}
	for role, except := range want {
		b := e.signIn("u-"+role, role)
		for _, p := range pages {
			w := b.do(http.MethodGet, Prefix+p, nil)
			status := http.StatusOK
			if s, ok := except[p]; ok {
				status = s
			}
			if w.Code != status {
				t.Errorf("%s GET %s: %d, want %d: %.300s", role, p, w.Code, status, w.Body)
			}
		}
	}
}

func TestPasswordHashRoundTrip(t *testing.T) {
	h, err := hashPassword(ownerPassword)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q: want argon2id with its parameters", h)
	}
	for _, tt := range []struct {
		pw   string
		want bool
	}{{ownerPassword, true}, {ownerPassword + " ", false}, {"", false}} {
		if ok, err := verifyPassword(h, tt.pw); err != nil || ok != tt.want {
			t.Errorf("verify %q: %v, %v; want %v", tt.pw, ok, err, tt.want)
		}
	}
	if _, err := verifyPassword("$argon2id$v=19$m=1,t=1,p=1$!!$!!", "x"); err == nil {
		t.Error("malformed hash verified without error")
	}
}

// call POSTs a console form as b and fails unless it answers 200 or 303.
func (e *env) call(b *browser, path string, form url.Values) error {
	e.t.Helper()
	form.Set("csrf", b.csrf())
	if w := b.do(http.MethodPost, path, form); w.Code != http.StatusOK && w.Code != http.StatusSeeOther {
		e.t.Fatalf("POST %s: %d: %.300s", path, w.Code, w.Body)
	}
	return nil
}

func TestTopologyLayoutMergesPairsPerDirection(t *testing.T) {
	nodes := []wire.NodeInfo{{Node: wire.Node{Name: "web"}, Online: true}, {Node: wire.Node{Name: "api"}}, {Node: wire.Node{Name: "db"}}}
	pairs := []wire.Pair{
		{Src: "web", Dst: "api", Proto: "tcp", Ports: "8080"},
		{Src: "web", Dst: "api", Proto: "icmp"},
		{Src: "api", Dst: "db", Proto: "tcp", Ports: "5432"},
		{Src: "db", Dst: "api", Proto: "tcp", Ports: "5432"},
	}
	gotNodes, edges, drawn := layout(nodes, pairs)
	if !drawn || len(gotNodes) != 3 || gotNodes[0].Name != "api" {
		t.Fatalf("nodes %+v drawn %v", gotNodes, drawn)
	}
	var got []string
	for _, e := range edges {
		got = append(got, e.Src+">"+e.Dst+" "+e.Ports)
		if e.X1 == e.X2 && e.Y1 == e.Y2 {
			t.Errorf("edge %s>%s has no length", e.Src, e.Dst)
		}
	}
	want := []string{"api>db tcp/5432", "db>api tcp/5432", "web>api tcp/8080, icmp"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("edges %q, want %q", got, want)
	}
}

func TestPasswordChangeNeedsTheCurrentOneAndEndsOtherSessions(t *testing.T) {
	e := newEnv(t, nil)
	e.setup()
	laptop := e.signIn("audrey", store.RoleAuditor)
	phone := e.browser()
	tok := phone.pre(Prefix + "/login")
	if w := phone.do(http.MethodPost, Prefix+"/login", url.Values{"csrf": {tok}, "username": {"audrey"}, "password": {ownerPassword}}); w.Code != http.StatusSeeOther {
		t.Fatalf("second sign-in: %d", w.Code)
	}
	const newPassword = "a much better passphrase"
	form := func(current string) url.Values {
		return url.Values{"csrf": {laptop.csrf()}, "current": {current}, "password": {newPassword}, "password2": {newPassword}}
	}
	if w := laptop.do(http.MethodPost, Prefix+"/account/password", form("wrong password!")); w.Code != http.StatusUnauthorized {
		t.Fatalf("change with a wrong current password: %d, want 401", w.Code)
	}
	if w := laptop.do(http.MethodPost, Prefix+"/account/password", form(ownerPassword)); w.Code != http.StatusSeeOther {
		t.Fatalf("change: %d", w.Code)
	}
	if w := laptop.do(http.MethodGet, Prefix+"/nodes", nil); w.Code != http.StatusOK {
		t.Errorf("the changing session ended: %d", w.Code)
	}
	if w := phone.do(http.MethodGet, Prefix+"/nodes", nil); w.Code != http.StatusSeeOther {
		t.Errorf("the other session survived the change: %d", w.Code)
	}
	b := e.browser()
	tok = b.pre(Prefix + "/login")
	if w := b.do(http.MethodPost, Prefix+"/login", url.Values{"csrf": {tok}, "username": {"audrey"}, "password": {ownerPassword}}); w.Code != http.StatusUnauthorized {
		t.Errorf("old password still signs in: %d", w.Code)
	}
	if w := b.do(http.MethodPost, Prefix+"/login", url.Values{"csrf": {tok}, "username": {"audrey"}, "password": {newPassword}}); w.Code != http.StatusSeeOther {
		t.Errorf("new password: %d, want 303", w.Code)
	}
}

func TestOnlyOwnersChangeRolesAndNotTheirOwn(t *testing.T) {
	e := newEnv(t, nil)
	owner := e.setup()
	admin := e.signIn("adam", store.RoleAdmin)
	e.signIn("audrey", store.RoleAuditor)
	tests := []struct {
		name   string
		b      *browser
		target string
		status int
		role   string // audrey's role afterwards
	}{
		{"admin-promotes", admin, "audrey", http.StatusForbidden, store.RoleAuditor},
		{"owner-demotes-self", owner, "olive", http.StatusBadRequest, store.RoleAuditor},
		{"owner-promotes", owner, "audrey", http.StatusSeeOther, store.RoleApprover},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.b.do(http.MethodPost, Prefix+"/users/"+tt.target+"/role", url.Values{"csrf": {tt.b.csrf()}, "role": {store.RoleApprover}})
			if w.Code != tt.status {
				t.Fatalf("role change: %d, want %d", w.Code, tt.status)
			}
			a, _ := e.st.ConsoleAccount(context.Background(), "audrey")
			if a.Role != tt.role {
				t.Errorf("audrey is %s, want %s", a.Role, tt.role)
			}
		})
	}
	if o, _ := e.st.ConsoleAccount(context.Background(), "olive"); o.Role != store.RoleOwner {
		t.Errorf("the owner is now %s", o.Role)
	}
}

func TestSecretsAreShownOnceOnTheCreatingPage(t *testing.T) {
	e := newEnv(t, nil)
	b := e.setup()
	secretRE := regexp.MustCompile(`latch(key|tok)_[A-Za-z0-9_-]+`)
	tests := []struct {
		name, path string
		form       url.Values
	}{
		{"enrollment-key", Prefix + "/keys", url.Values{"description": {"once"}, "kind": {"reusable"}}},
		{"api-token", Prefix + "/tokens", url.Values{"user": {"ci@example.com"}, "scope": {"nodes:read", "audit:read"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.form.Set("csrf", b.csrf())
			w := b.do(http.MethodPost, tt.path, tt.form)
			secret := secretRE.FindString(w.Body.String())
			if w.Code != http.StatusOK || secret == "" {
				t.Fatalf("create: %d, secret %q", w.Code, secret)
			}
			if page := b.do(http.MethodGet, Prefix+"/keys", nil).Body.String(); strings.Contains(page, secret) {
				t.Error("the secret is shown again")
			}
		})
	}
	toks, _ := e.st.APITokens(context.Background())
	found := false
	for _, tk := range toks {
		found = found || (tk.User == "ci@example.com" && len(tk.Scopes) == 2)
	}
	if len(toks) != 2 || !found {
		t.Errorf("tokens %+v, want the bootstrap token and ci@example.com's with two scopes", toks)
	}
}
