package federation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchnet/latch/wire"
)

// Verification defaults.
const (
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// DefaultHTTPTimeout bounds one discovery or JWKS request.
	DefaultHTTPTimeout = 10 * time.Second
	// MaxTokenBytes bounds the size of a presented token.
	MaxTokenBytes = 16 << 10
	// maxResponseBytes bounds a discovery document or JWKS.
	maxResponseBytes = 1 << 20
	// rediscoverAfter is how long a discovered issuer is cached; its keys
	// are refetched sooner, whenever a token names an unknown kid.
	rediscoverAfter = 24 * time.Hour
)

// Algorithms are the signature algorithms accepted: asymmetric only. "none"
// and the HMAC algorithms (HS256...) are never accepted: an issuer's
// public key must not double as a shared secret.
var Algorithms = []string{
	oidc.RS256, oidc.RS384, oidc.RS512,
	oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.EdDSA,
}

// Config configures a Verifier.
type Config struct {
	// ExtraRootsPEM are CA certificates (PEM) trusted for issuer HTTPS in
	// addition to the system roots (a private issuer, or a test's).
	ExtraRootsPEM []byte
	// HTTPTimeout bounds each request to an issuer; zero means
	// DefaultHTTPTimeout.
	HTTPTimeout time.Duration
	// Leeway is the clock skew allowed; zero means DefaultLeeway.
	Leeway time.Duration
	// Now defaults to time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Verifier verifies ID tokens against trust rules. It caches one OIDC
// provider (discovery document and JWKS) per issuer. Safe for concurrent
// use.
type Verifier struct {
	cfg    Config
	client *http.Client

	mu        sync.Mutex                // guards verifiers
	verifiers map[string]cachedVerifier // by issuer URL
}

// cachedVerifier is one discovered issuer.
type cachedVerifier struct {
	v          *oidc.IDTokenVerifier
	discovered time.Time
}

// NewVerifier returns a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.HTTPTimeout <= 0 {
		cfg.HTTPTimeout = DefaultHTTPTimeout
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if len(cfg.ExtraRootsPEM) > 0 && !roots.AppendCertsFromPEM(cfg.ExtraRootsPEM) {
		return nil, errors.New("creating token verifier: no PEM certificate in the extra issuer roots")
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: cfg.HTTPTimeout}).DialContext,
		TLSHandshakeTimeout:   cfg.HTTPTimeout,
		ResponseHeaderTimeout: cfg.HTTPTimeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
	}
	v := &Verifier{
		cfg: cfg,
		client: &http.Client{
			Timeout:   cfg.HTTPTimeout,
			Transport: httpsOnly{tr},
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 3 {
					return errors.New("too many redirects")
				}
				return nil
			},
		},
		verifiers: map[string]cachedVerifier{},
	}
	return v, nil
}

// httpsOnly refuses every request that is not https, redirects included.
type httpsOnly struct{ rt http.RoundTripper }

func (h httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" {
		return nil, fmt.Errorf("refusing %s URL %q: issuers are reached over https only", r.URL.Scheme, r.URL.Redacted())
	}
	resp, err := h.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxResponseBytes}
	return resp, nil
}

// limitedBody fails a read past its limit instead of truncating quietly.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("issuer response larger than %d bytes", maxResponseBytes)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// Result is a verified token's enrollment decision.
type Result struct {
	// Rule is the first rule the token satisfies.
	Rule wire.TrustRule
	// TokenID identifies the token for replay refusal: the SHA-256 of
	// the issuer and jti, or of the whole token when it has no jti.
	TokenID string
	// TokenExpires is the token's exp; the replay record is kept until then.
	TokenExpires time.Time
	// Subject is the token's sub (for the audit record).
	Subject string
}

// Refusal reports a token that is refused, with a reason fit for the
// audit log and the caller (it never holds the token).
type Refusal struct {
	// Status is the HTTP status to answer: 401 for a token that is not
	// valid, 403 for a valid token no rule admits.
	Status int
	Reason string
}

func (r *Refusal) Error() string { return r.Reason }

func refuse(status int, format string, args ...any) *Refusal {
	return &Refusal{Status: status, Reason: fmt.Sprintf(format, args...)}
}

// Verify verifies raw and returns the first of rules it satisfies. A
// refused token returns a *Refusal; other errors are internal.
func (v *Verifier) Verify(ctx context.Context, raw string, rules []wire.TrustRule) (Result, error) {
	if len(raw) > MaxTokenBytes {
		return Result{}, refuse(http.StatusUnauthorized, "ID token larger than %d bytes", MaxTokenBytes)
	}
	// Parse with the allowed algorithms first: "none" and HS* fail here.
	algs := make([]jose.SignatureAlgorithm, len(Algorithms))
	for i, a := range Algorithms {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	jws, err := jose.ParseSigned(raw, algs)
	if err != nil {
		return Result{}, refuse(http.StatusUnauthorized, "malformed ID token or signature algorithm not allowed (want one of RS*, PS*, ES*, EdDSA)")
	}
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified); err != nil || unverified.Issuer == "" {
		return Result{}, refuse(http.StatusUnauthorized, "ID token has no issuer")
	}
	iss := unverified.Issuer
	var candidates []wire.TrustRule
	for _, r := range rules {
		if r.Issuer == iss {
			candidates = append(candidates, r)
		}
	}
	if len(candidates) == 0 {
		return Result{}, refuse(http.StatusUnauthorized, "no trust rule for issuer %q", truncate(iss, 100))
	}
	verifier, err := v.verifier(ctx, iss)
	if err != nil {
		v.cfg.Logger.Warn("issuer discovery failed", "issuer", iss, "err", err)
		return Result{}, refuse(http.StatusUnauthorized, "cannot verify the ID token: discovery of issuer %q failed", truncate(iss, 100))
	}
	tok, err := verifier.Verify(ctx, raw)
	if err != nil {
		return Result{}, refuse(http.StatusUnauthorized, "ID token not verified: %s", describe(err))
	}
	claims, err := decodeClaims(tok)
	if err != nil {
		return Result{}, refuse(http.StatusUnauthorized, "ID token claims: %v", err)
	}
	if err := v.checkTimes(claims); err != nil {
		return Result{}, err
	}
	audOK := false
	for _, r := range candidates {
		if !slices.Contains(tok.Audience, r.Audience) {
			continue
		}
		audOK = true
		if matchClaims(r.Claims, claims) {
			return Result{Rule: r, TokenID: tokenID(iss, claims, raw), TokenExpires: tok.Expiry, Subject: tok.Subject}, nil
		}
	}
	if !audOK {
		return Result{}, refuse(http.StatusUnauthorized, "ID token audience %q is not accepted by any trust rule of its issuer", truncate(fmt.Sprint(tok.Audience), 100))
	}
	return Result{}, refuse(http.StatusForbidden, "ID token claims (sub %q) match no trust rule", truncate(tok.Subject, 100))
}

// verifier returns the cached verifier for issuer, discovering it on first
// use. Failures are not cached: the next request tries again.
func (v *Verifier) verifier(ctx context.Context, issuer string) (*oidc.IDTokenVerifier, error) {
	if err := CheckIssuer(issuer); err != nil {
		return nil, err
	}
	now := v.cfg.Now()
	v.mu.Lock()
	c, ok := v.verifiers[issuer]
	v.mu.Unlock()
	if ok && now.Sub(c.discovered) < rediscoverAfter {
		return c.v, nil
	}
	dctx, cancel := context.WithTimeout(ctx, v.cfg.HTTPTimeout)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(dctx, v.client), issuer)
	if err != nil {
		return nil, err
	}
	vf := p.Verifier(&oidc.Config{
		// Audience and times are checked per rule and with leeway below.
		SkipClientIDCheck:    true,
		SkipExpiryCheck:      true,
		SupportedSigningAlgs: Algorithms,
	})
	v.mu.Lock()
	defer v.mu.Unlock()
	v.verifiers[issuer] = cachedVerifier{v: vf, discovered: now}
	return vf, nil
}

// Forget drops cached issuers that no rule names any more.
func (v *Verifier) Forget(rules []wire.TrustRule) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for iss := range v.verifiers {
		if !slices.ContainsFunc(rules, func(r wire.TrustRule) bool { return r.Issuer == iss }) {
			delete(v.verifiers, iss)
		}
	}
}

// describe turns a go-oidc error into a short reason.
func describe(err error) string {
	var exp *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &exp):
		return "expired"
	case strings.Contains(msg, "signature"):
		return "signature does not verify against the issuer's keys"
	case strings.Contains(msg, "different provider"):
		return "issuer mismatch"
	}
	return truncate(msg, 200)
}

// decodeClaims returns the token's claims with numbers kept exact.
func decodeClaims(tok *oidc.IDToken) (map[string]any, error) {
	var raw json.RawMessage
	if err := tok.Claims(&raw); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// checkTimes checks exp (required), nbf and iat with the leeway.
func (v *Verifier) checkTimes(claims map[string]any) error {
	now := v.cfg.Now()
	lw := v.cfg.Leeway
	exp, ok, err := numericDate(claims, "exp")
	if err != nil || !ok {
		return refuse(http.StatusUnauthorized, "ID token has no valid exp")
	}
	if !now.Before(exp.Add(lw)) {
		return refuse(http.StatusUnauthorized, "ID token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	nbf, ok, err := numericDate(claims, "nbf")
	if err != nil {
		return refuse(http.StatusUnauthorized, "ID token has an invalid nbf")
	}
	if ok && now.Add(lw).Before(nbf) {
		return refuse(http.StatusUnauthorized, "ID token not valid before %s", nbf.UTC().Format(time.RFC3339))
	}
	iat, ok, err := numericDate(claims, "iat")
	if err != nil {
		return refuse(http.StatusUnauthorized, "ID token has an invalid iat")
	}
	if ok && now.Add(lw).Before(iat) {
		return refuse(http.StatusUnauthorized, "ID token issued in the future (%s)", iat.UTC().Format(time.RFC3339))
	}
	return nil
}

// numericDate reads a JWT NumericDate claim.
func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	v, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false, fmt.Errorf("%s is not a number", name)
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > 1e11 {
		return time.Time{}, false, fmt.Errorf("%s out of range", name)
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true, nil
}

// matchClaims reports whether every pattern matches its claim. Only
// string, number and boolean claims can match; a missing claim never does.
func matchClaims(patterns map[string]string, claims map[string]any) bool {
	for name, pat := range patterns {
		s, ok := claimString(claims[name])
		if !ok {
			return false
		}
		p, err := CompilePattern(pat)
		if err != nil || !p.Match(s) {
			return false
		}
	}
	return true
}

func claimString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// tokenID identifies a token for replay refusal.
func tokenID(iss string, claims map[string]any, raw string) string {
	var h [32]byte
	if jti, ok := claims["jti"].(string); ok && jti != "" {
		h = sha256.Sum256([]byte("jti\x00" + iss + "\x00" + jti))
	} else {
		h = sha256.Sum256([]byte("token\x00" + raw))
	}
	return hex.EncodeToString(h[:])
}
