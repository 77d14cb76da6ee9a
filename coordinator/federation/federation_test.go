package federation_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/federation"
	"github.com/latchnet/latch/internal/oidctest"
	"github.com/latchnet/latch/wire"
)

func startIssuer(t *testing.T) *oidctest.Issuer {
	t.Helper()
	iss, err := oidctest.Start(oidctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { iss.Close() })
	return iss
}

func newVerifier(t *testing.T, iss ...*oidctest.Issuer) *federation.Verifier {
	t.Helper()
	var pem []byte
	for _, i := range iss {
		pem = append(pem, i.CAPEM...)
	}
	v, err := federation.NewVerifier(federation.Config{ExtraRootsPEM: pem})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func ciRule(iss *oidctest.Issuer) wire.TrustRule {
	return wire.TrustRule{ID: "r1", TrustRuleRequest: wire.TrustRuleRequest{
		Name: "gha-deploy", Issuer: iss.URL, Audience: "latch",
		Claims: map[string]string{"sub": "repo:acme/app:ref:refs/heads/main", "repository_owner": "acme"},
		Tags:   []wire.Tag{"tag:ci"}, Ephemeral: true, MaxLifetime: time.Hour,
	}}
}

func ciClaims(iss *oidctest.Issuer) map[string]any {
	c := iss.Claims("repo:acme/app:ref:refs/heads/main", "latch")
	c["repository_owner"] = "acme"
	return c
}

// TestVerifyRefusesBadTokens runs every kind of bad token through the
// production verifier against a real issuer.
func TestVerifyRefusesBadTokens(t *testing.T) {
	iss := startIssuer(t)
	other := startIssuer(t)
	v := newVerifier(t, iss, other)
	rules := []wire.TrustRule{ciRule(iss)}
	ctx := context.Background()

	sign := func(mod func(map[string]any)) func() (string, error) {
		return func() (string, error) {
			c := ciClaims(iss)
			mod(c)
			return iss.Sign(c)
		}
	}
	noop := func(map[string]any) {}
	tests := []struct {
		name   string
		token  func() (string, error)
		status int
		reason string // substring of the refusal
	}{
		{"wrong issuer", func() (string, error) {
			c := ciClaims(other)
			return other.Sign(c)
		}, 401, "no trust rule for issuer"},
		{"issuer claim forged", sign(func(c map[string]any) { c["iss"] = other.URL }), 401, "no trust rule for issuer"},
		{"wrong audience", sign(func(c map[string]any) { c["aud"] = "someone-else" }), 401, "audience"},
		{"expired", sign(func(c map[string]any) {
			c["exp"] = time.Now().Add(-2 * time.Minute).Unix()
			c["iat"] = time.Now().Add(-10 * time.Minute).Unix()
			c["nbf"] = c["iat"]
		}), 401, "expired"},
		{"no expiry", sign(func(c map[string]any) { delete(c, "exp") }), 401, "no valid exp"},
		{"not yet valid", sign(func(c map[string]any) { c["nbf"] = time.Now().Add(5 * time.Minute).Unix() }), 401, "not valid before"},
		{"alg none", func() (string, error) { return iss.UnsignedToken(ciClaims(iss)) }, 401, "algorithm not allowed"},
		{"HS256 keyed with the public key", func() (string, error) { return iss.HMACWithPublicKey(ciClaims(iss)) }, 401, "algorithm not allowed"},
		{"unknown kid", func() (string, error) {
			return iss.SignWith(oidctest.SignOptions{Kid: "nosuchkey"}, ciClaims(iss))
		}, 401, "signature"},
		{"signed by another key under the right kid", func() (string, error) {
			return iss.SignWith(oidctest.SignOptions{Stray: true}, ciClaims(iss))
		}, 401, "signature"},
		{"signed by another key under a new kid", func() (string, error) {
			return iss.SignWith(oidctest.SignOptions{Stray: true, StrayKid: "stray"}, ciClaims(iss))
		}, 401, "signature"},
		{"sub matches no rule", sign(func(c map[string]any) { c["sub"] = "repo:acme/app:ref:refs/heads/feature" }), 403, "match no trust rule"},
		{"other claim matches no rule", sign(func(c map[string]any) { c["repository_owner"] = "evil" }), 403, "match no trust rule"},
		{"claim missing", sign(func(c map[string]any) { delete(c, "repository_owner") }), 403, "match no trust rule"},
		{"claim of the wrong type", sign(func(c map[string]any) { c["repository_owner"] = []string{"acme"} }), 403, "match no trust rule"},
		{"garbage", func() (string, error) { return "not.a.jwt", nil }, 401, "malformed"},
		{"valid", sign(noop), 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := tt.token()
			if err != nil {
				t.Fatal(err)
			}
			res, err := v.Verify(ctx, raw, rules)
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("valid token refused: %v", err)
				}
				if res.Rule.ID != "r1" || res.TokenID == "" || res.TokenExpires.IsZero() {
					t.Fatalf("result = %+v", res)
				}
				return
			}
			var ref *federation.Refusal
			if !errors.As(err, &ref) {
				t.Fatalf("err = %v (%T), want a *Refusal", err, err)
			}
			if ref.Status != tt.status || !strings.Contains(ref.Reason, tt.reason) {
				t.Fatalf("refusal = %d %q, want %d containing %q", ref.Status, ref.Reason, tt.status, tt.reason)
			}
			if strings.Contains(ref.Reason, raw) {
				t.Fatalf("refusal reason holds the token")
			}
		})
	}
}

func TestVerifyPicksFirstMatchingRuleAndAlgorithms(t *testing.T) {
	iss := startIssuer(t)
	v := newVerifier(t, iss)
	wide := ciRule(iss)
	wide.ID, wide.Name = "r2", "any-branch"
	wide.Claims = map[string]string{"sub": "repo:acme/*:ref:refs/heads/**"}
	wide.Tags = []wire.Tag{"tag:build"}
	rules := []wire.TrustRule{ciRule(iss), wide}
	ctx := context.Background()

	for _, alg := range []string{oidctest.RS256, oidctest.ES256} {
		raw, err := iss.SignWith(oidctest.SignOptions{Alg: alg}, ciClaims(iss))
		if err != nil {
			t.Fatal(err)
		}
		res, err := v.Verify(ctx, raw, rules)
		if err != nil || res.Rule.ID != "r1" {
			t.Fatalf("%s: rule %q err %v, want r1", alg, res.Rule.ID, err)
		}
	}
	c := ciClaims(iss)
	c["sub"] = "repo:acme/lib:ref:refs/heads/release/v2"
	raw, _ := iss.Sign(c)
	if res, err := v.Verify(ctx, raw, rules); err != nil || res.Rule.ID != "r2" {
		t.Fatalf("feature branch: rule %q err %v, want r2", res.Rule.ID, err)
	}
	// Same jti, same ID; no jti: the ID is the token's hash.
	c = ciClaims(iss)
	a, _ := iss.Sign(c)
	b, _ := iss.Sign(c)
	ra, _ := v.Verify(ctx, a, rules)
	rb, _ := v.Verify(ctx, b, rules)
	if ra.TokenID != rb.TokenID {
		t.Fatal("two tokens with one jti have different IDs")
	}
	delete(c, "jti")
	a, _ = iss.Sign(c)
	c["iat"] = c["iat"].(int64) + 1
	b, _ = iss.Sign(c)
	ra, _ = v.Verify(ctx, a, rules)
	rb, _ = v.Verify(ctx, b, rules)
	if ra.TokenID == "" || ra.TokenID == rb.TokenID {
		t.Fatal("tokens without jti share an ID")
	}
}

func TestVerifyFollowsKeyRotation(t *testing.T) {
	iss := startIssuer(t)
	v := newVerifier(t, iss)
	rules := []wire.TrustRule{ciRule(iss)}
	ctx := context.Background()
	old, _ := iss.Sign(ciClaims(iss))
	if _, err := v.Verify(ctx, old, rules); err != nil {
		t.Fatal(err)
	}
	if err := iss.Rotate(oidctest.ES256, false); err != nil {
		t.Fatal(err)
	}
	fresh, _ := iss.Sign(ciClaims(iss))
	if _, err := v.Verify(ctx, fresh, rules); err != nil {
		t.Fatalf("token from the rotated key refused: %v", err)
	}
	if _, err := v.Verify(ctx, old, rules); err == nil {
		t.Fatal("token from a key removed from the JWKS accepted")
	}
}

func TestVerifierRefusesPlainHTTPIssuer(t *testing.T) {
	v := newVerifier(t)
	rule := wire.TrustRule{ID: "r", TrustRuleRequest: wire.TrustRuleRequest{Issuer: "http://127.0.0.1:1", Audience: "latch",
		Claims: map[string]string{"sub": "x"}}}
	iss := startIssuer(t)
	c := iss.Claims("x", "latch")
	c["iss"] = "http://127.0.0.1:1"
	raw, _ := iss.Sign(c)
	_, err := v.Verify(context.Background(), raw, []wire.TrustRule{rule})
	var ref *federation.Refusal
	if !errors.As(err, &ref) || ref.Status != http.StatusUnauthorized {
		t.Fatalf("http issuer: err = %v", err)
	}
}

// TestVerifierRefusesPlainHTTPKeys: a discovery document that points to
// keys over plain HTTP is not followed, even when the keys there are right.
func TestVerifierRefusesPlainHTTPKeys(t *testing.T) {
	var h http.Handler
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	defer plain.Close()
	iss, err := oidctest.Start(oidctest.Options{JWKSURL: plain.URL + "/jwks"})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	h = iss.JWKSHandler()
	v := newVerifier(t, iss)
	raw, _ := iss.Sign(ciClaims(iss))
	_, err = v.Verify(context.Background(), raw, []wire.TrustRule{ciRule(iss)})
	var ref *federation.Refusal
	if !errors.As(err, &ref) || !strings.Contains(ref.Reason, "signature") {
		t.Fatalf("http jwks_uri: err = %v, want a refusal", err)
	}
}

func TestVerifierDoesNotTrustIssuerWithoutItsCA(t *testing.T) {
	iss := startIssuer(t)
	v := newVerifier(t) // no extra roots
	raw, _ := iss.Sign(ciClaims(iss))
	_, err := v.Verify(context.Background(), raw, []wire.TrustRule{ciRule(iss)})
	if err == nil || !strings.Contains(err.Error(), "discovery") {
		t.Fatalf("err = %v, want a discovery failure", err)
	}
}

// The issuer's discovery and keys are fetched once, not per token; an
// unknown kid makes the verifier look again.
func TestVerifierCachesTheIssuer(t *testing.T) {
	iss := startIssuer(t)
	v := newVerifier(t, iss)
	rules := []wire.TrustRule{ciRule(iss)}
	for range 5 {
		raw, _ := iss.Sign(ciClaims(iss))
		if _, err := v.Verify(context.Background(), raw, rules); err != nil {
			t.Fatal(err)
		}
	}
	if n := iss.JWKSFetches(); n != 1 {
		t.Fatalf("%d JWKS fetches for 5 tokens, want 1", n)
	}
	raw, _ := iss.SignWith(oidctest.SignOptions{Kid: "rotated-away"}, ciClaims(iss))
	v.Verify(context.Background(), raw, rules)
	if n := iss.JWKSFetches(); n != 2 {
		t.Fatalf("%d JWKS fetches after an unknown kid, want 2", n)
	}
}
