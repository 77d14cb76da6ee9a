// Package console is the coordinator's web console: server-rendered pages
// (html/template, assets embedded with go:embed) under /console on the
// coordinator's HTTPS listener.
//
// The console has no path of its own to the coordinator's data. Every
// page is rendered from, and every action performed by, the admin API
// handler called in-process: the request carries the signed-in user as an
// api.Principal whose scopes come from the user's role, so the API's own
// scope checks, refusals (403, audited) and audit records apply exactly as
// for a CLI call with a token. Only console accounts and sessions, which
// the API does not serve, live in the store directly.
//
// Safety is structural: every request must name an allowed Host (DNS
// rebinding) and every POST must come from the console's own origin and
// carry the CSRF token bound to the session; responses carry a strict
// Content-Security-Policy (no inline script or style) and frame denial;
// the session cookie is __Host-, HttpOnly, Secure and SameSite=Strict.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/coordinator/store"
)

// Prefix is where the console is mounted.
const Prefix = "/console"

// Defaults.
const (
	DefaultSessionLifetime = 12 * time.Hour
	DefaultIdleTimeout     = time.Hour
	DefaultEventInterval   = time.Second
	// maxEventStreams bounds concurrent live-update streams.
	maxEventStreams = 64
)

// DefaultLoginPerIP and DefaultLoginPerUser bound failed sign-ins (and
// setup attempts): once a bucket is empty, attempts get 429.
var (
	DefaultLoginPerIP   = ratelimit.Limit{Rate: 10.0 / 60, Burst: 10}
	DefaultLoginPerUser = ratelimit.Limit{Rate: 5.0 / 60, Burst: 5}
)

// Log keys.
const (
	logUser   = "user"
	logRemote = "remote"
	logErr    = "err"
	logPath   = "path"
	logHost   = "host"
	logOrigin = "origin"
	logPage   = "page"
)

// Config configures the console.
type Config struct {
	// API is the coordinator's API handler; the console calls it
	// in-process for every read and change. Required.
	API http.Handler
	// Store holds console accounts and sessions, and the API tokens the
	// bootstrap token is checked against. Required.
	Store store.Store
	// Hosts are the host names and IPs (no port) a request's Host header
	// may name; anything else gets 403 (DNS rebinding). Required.
	Hosts []string
	// BootstrapUser is the user of the one-time bootstrap API token,
	// the only token /console/setup accepts. Required.
	BootstrapUser string
	// SessionLifetime is the absolute lifetime of a session, IdleTimeout
	// how long one may go unused; zero means the defaults.
	SessionLifetime time.Duration
	IdleTimeout     time.Duration
	// LoginPerIP and LoginPerUser bound failed sign-ins; a zero Limit
	// takes the default, a negative Rate turns the limit off.
	LoginPerIP   ratelimit.Limit
	LoginPerUser ratelimit.Limit
	// EventInterval is how often a live-update stream looks for changes.
	EventInterval time.Duration
	// Now defaults to time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// OIDC, when set, adds sign-in with an OpenID Connect provider
	// (oidc.go); nil offers local accounts only.
	OIDC *OIDCConfig
}

// Console serves the web console. Close ends its live-update streams.
type Console struct {
	cfg     Config
	log     *slog.Logger
	hosts   map[string]bool
	mux     *http.ServeMux
	pages   map[string]*template.Template
	static  http.Handler
	loginIP *ratelimit.Limiter
	loginU  *ratelimit.Limiter
	oidc    *oidcLogin // nil without Config.OIDC

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	streams   chan struct{} // a slot per live-update stream
}

//go:embed assets
var assets embed.FS

// New returns the console.
func New(cfg Config) (*Console, error) {
	if cfg.API == nil || cfg.Store == nil {
		return nil, errors.New("console: API and store are required")
	}
	if cfg.BootstrapUser == "" {
		return nil, errors.New("console: bootstrap user is required")
	}
	if cfg.SessionLifetime <= 0 {
		cfg.SessionLifetime = DefaultSessionLifetime
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.EventInterval <= 0 {
		cfg.EventInterval = DefaultEventInterval
	}
	if cfg.LoginPerIP == (ratelimit.Limit{}) {
		cfg.LoginPerIP = DefaultLoginPerIP
	}
	if cfg.LoginPerUser == (ratelimit.Limit{}) {
		cfg.LoginPerUser = DefaultLoginPerUser
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Console{
		cfg:     cfg,
		log:     cfg.Logger,
		hosts:   make(map[string]bool),
		mux:     http.NewServeMux(),
		loginIP: ratelimit.New(ratelimit.Config{Limit: cfg.LoginPerIP, Now: cfg.Now}),
		loginU:  ratelimit.New(ratelimit.Config{Limit: cfg.LoginPerUser, Now: cfg.Now}),
		closing: make(chan struct{}),
		streams: make(chan struct{}, maxEventStreams),
	}
	for _, h := range cfg.Hosts {
		if h = normalizeHost(h); h != "" {
			c.hosts[h] = true
		}
	}
	if len(c.hosts) == 0 {
		return nil, errors.New("console: at least one allowed host name is required")
	}
	if o := cfg.OIDC; o != nil {
		if o.Issuer == "" || o.ClientID == "" {
			return nil, errors.New("console: OIDC sign-in needs an issuer and a client ID")
		}
		c.oidc = &oidcLogin{cfg: *o}
	}
	var err error
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c.static = http.StripPrefix(Prefix+"/static/", http.FileServerFS(static))
	c.routes()
	return c, nil
}

// Close ends every live-update stream; call it when the server shuts
// down (http.Server.RegisterOnShutdown).
func (c *Console) Close() {
	c.closeOnce.Do(func() { close(c.closing) })
}

// Mount returns a handler that serves the console under Prefix and
// everything else with api.
func Mount(api http.Handler, c *Console) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == Prefix || strings.HasPrefix(r.URL.Path, Prefix+"/") {
			c.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// csp is the Content-Security-Policy of every console response: nothing
// but the console's own files, no inline script or style, no framing.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

// ServeHTTP checks every request's Host and, for changes, its method,
// Origin and CSRF token, then serves it.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if !c.hostAllowed(r.Host) {
		c.log.Info("console request for a foreign host refused", logHost, truncate(r.Host, 100), logRemote, r.RemoteAddr)
		plainError(w, http.StatusForbidden, "forbidden: unknown host name")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		// Navigations send no Origin; a script of another site does.
		if r.Header.Get("Origin") != "" && !sameOrigin(r) {
			c.log.Info("console cross-origin request refused", logOrigin, truncate(r.Header.Get("Origin"), 100), logRemote, r.RemoteAddr)
			plainError(w, http.StatusForbidden, "forbidden: cross-origin request")
			return
		}
	case http.MethodPost:
		if !sameOrigin(r) {
			c.log.Info("console cross-origin POST refused", logOrigin, truncate(r.Header.Get("Origin"), 100), logRemote, r.RemoteAddr)
			plainError(w, http.StatusForbidden, "forbidden: cross-origin request")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		plainError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if r.URL.Path == Prefix {
		http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
		return
	}
	if strings.HasPrefix(r.URL.Path, Prefix+"/static/") {
		h.Set("Cache-Control", "no-cache")
		c.static.ServeHTTP(w, r)
		return
	}
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

// maxFormBytes bounds a form body (a policy is the largest).
const maxFormBytes = 2 << 20

// hostAllowed reports whether the Host header names the coordinator.
func (c *Console) hostAllowed(host string) bool {
	return c.hosts[normalizeHost(host)]
}

// normalizeHost returns host without its port, brackets and trailing
// dot, lowercase; IPs in canonical form.
func normalizeHost(host string) string {
	host = strings.TrimSpace(host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().WithZone("").String()
	}
	return host
}

// sameOrigin reports whether a POST comes from the console's own origin.
// An Origin header, when it names an origin, must be https://<Host>.
// Pages are served with Referrer-Policy no-referrer, under which browsers
// send "Origin: null" on their own form posts; such a request (and one
// without Origin) must then carry Sec-Fetch-Site: same-origin, which a
// page of another site cannot forge. A request without Origin and without
// Sec-Fetch-Site (a script, not a browser) passes here but still needs
// the session's CSRF token.
func sameOrigin(r *http.Request) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	switch o := r.Header.Get("Origin"); o {
	case "null":
		return site == "same-origin"
	case "":
		return site == "" || site == "same-origin" || site == "none"
	default:
		return o == "https://"+r.Host && (site == "" || site == "same-origin")
	}
}

// plainError answers with a one-line text error (before any page can be
// rendered: foreign hosts, cross-origin requests).
func plainError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// background returns a context that ends when the console closes or ctx
// ends.
func (c *Console) background(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-c.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
