package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/federation"
	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/internal/oidctest"
	"github.com/latchnet/latch/wire"
)

// fedEnv is an API env whose verifier trusts a real loopback OIDC issuer,
// with a policy knowing tag:ci and a trust rule for it.
type fedEnv struct {
	*env
	iss  *oidctest.Issuer
	rule wire.TrustRule
}

const ciSub = "repo:acme/app:ref:refs/heads/main"

func newFedEnv(t *testing.T, mod func(*Config)) *fedEnv {
	t.Helper()
	iss, err := oidctest.Start(oidctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { iss.Close() })
	v, err := federation.NewVerifier(federation.Config{ExtraRootsPEM: iss.CAPEM})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) {
		c.Federation = v
		if mod != nil {
			mod(c)
		}
	})
	e.setPolicy(`{"tagOwners": {"tag:ci": [], "tag:web": []}}`)
	f := &fedEnv{env: e, iss: iss}
	e.admin(http.MethodPost, wire.PathTrustRules, wire.TrustRuleRequest{
		Name: "gha-deploy", Issuer: iss.URL, Audience: "latch",
		Claims: map[string]string{"sub": ciSub, "repository_owner": "acme"},
		Tags:   []wire.Tag{"tag:ci"}, Ephemeral: true,
	}, http.StatusCreated, &f.rule)
	return f
}

func (f *fedEnv) claims() map[string]any {
	c := f.iss.Claims(ciSub, "latch")
	c["repository_owner"] = "acme"
	return c
}

func (f *fedEnv) token(c map[string]any) string {
	f.t.Helper()
	raw, err := f.iss.Sign(c)
	if err != nil {
		f.t.Fatal(err)
	}
	return raw
}

// enrollToken posts a federated enrollment for a fresh agent.
func (f *fedEnv) enrollToken(tok string) (int, []byte, *agent) {
	f.t.Helper()
	a := newAgent()
	req := a.request("", "runner-1")
	req.IDToken = tok
	status, b := f.do(f.client, http.MethodPost, wire.PathEnroll, agentHdr(), mustJSON(req))
	return status, b, a
}

func (f *fedEnv) refusals() []string {
	f.t.Helper()
	recs, err := f.st.AuditRecords(context.Background(), store.AuditFilter{Action: store.AuditEnrollRefused})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Summary)
	}
	return out
}

func TestFederatedEnrollmentGetsTheRulesTagsEphemeralAndExpiry(t *testing.T) {
	f := newFedEnv(t, nil)
	if f.rule.MaxLifetime != time.Hour || f.rule.ID == "" {
		t.Fatalf("rule = %+v", f.rule)
	}
	before := f.clock.Now()
	tok := f.token(f.claims())
	status, b, _ := f.enrollToken(tok)
	if status != http.StatusOK {
		t.Fatalf("enroll: %d %s", status, b)
	}
	// The token is never stored: not its text, not its signature.
	sig := tok[strings.LastIndex(tok, ".")+1:]
	var stored []byte
	for _, suffix := range []string{"", "-wal"} {
		db, _ := os.ReadFile(f.dbPath() + suffix)
		stored = append(stored, db...)
	}
	if !bytes.Contains(stored, []byte("repository_owner")) {
		t.Fatal("the database files do not hold the trust rule: the check below would prove nothing")
	}
	if bytes.Contains(stored, []byte(sig)) || bytes.Contains(stored, []byte(tok)) {
		t.Fatal("the database holds the ID token")
	}
	var resp wire.EnrollResponse
	json.Unmarshal(b, &resp)
	n := resp.Node
	if len(n.Tags) != 1 || n.Tags[0] != "tag:ci" || !n.Ephemeral {
		t.Fatalf("node = %+v", n)
	}
	if d := n.KeyExpiry.Sub(before); d < time.Hour-time.Second || d > time.Hour+time.Second {
		t.Fatalf("key expiry %v is %v after enrollment, want 1h", n.KeyExpiry, d)
	}
	rules, _ := f.st.NodeTrustRules(context.Background())
	if rules[n.ID] != "gha-deploy" {
		t.Fatalf("node's trust rule = %q", rules[n.ID])
	}
	var info wire.NodeInfo
	f.admin(http.MethodGet, wire.PathNodes+"/"+string(n.ID), nil, http.StatusOK, &info)
	if info.TrustRule != "gha-deploy" || info.KeyExpiry.IsZero() {
		t.Fatalf("node info: trust rule %q, key expiry %v", info.TrustRule, info.KeyExpiry)
	}
	recs, _ := f.st.AuditRecords(context.Background(), store.AuditFilter{Action: "node.enroll"})
	if len(recs) != 1 || recs[0].Actor != "trust_rule:"+f.rule.ID || !strings.Contains(recs[0].Summary, ciSub) {
		t.Fatalf("enroll audit = %+v", recs)
	}
	var rl []wire.TrustRule
	f.admin(http.MethodGet, wire.PathTrustRules, nil, http.StatusOK, &rl)
	if len(rl) != 1 || rl[0].Uses != 1 {
		t.Fatalf("rules = %+v", rl)
	}
}

// TestFederatedEnrollmentRefusesBadTokens: every bad token is refused with
// a one-line 401/403, stores no node and leaves an audit record with the
// reason and never the token.
func TestFederatedEnrollmentRefusesBadTokens(t *testing.T) {
	f := newFedEnv(t, nil)
	other, err := oidctest.Start(oidctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	used := f.token(f.claims())
	if status, b, _ := f.enrollToken(used); status != http.StatusOK {
		t.Fatalf("first use: %d %s", status, b)
	}
	mod := func(m func(map[string]any)) func() string {
		return func() string {
			c := f.claims()
			m(c)
			return f.token(c)
		}
	}
	must := func(s string, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name   string
		token  func() string
		status int
		reason string
	}{
		{"wrong issuer", func() string {
			c := other.Claims(ciSub, "latch")
			c["repository_owner"] = "acme"
			return must(other.Sign(c))
		}, 401, "no trust rule for issuer"},
		{"wrong audience", mod(func(c map[string]any) { c["aud"] = "other" }), 401, "audience"},
		{"expired", mod(func(c map[string]any) {
			c["iat"] = time.Now().Add(-20 * time.Minute).Unix()
			c["nbf"] = c["iat"]
			c["exp"] = time.Now().Add(-5 * time.Minute).Unix()
		}), 401, "expired"},
		{"not yet valid", mod(func(c map[string]any) { c["nbf"] = time.Now().Add(10 * time.Minute).Unix() }), 401, "not valid before"},
		{"alg none", func() string { return must(f.iss.UnsignedToken(f.claims())) }, 401, "algorithm not allowed"},
		{"HS256 with the public key", func() string { return must(f.iss.HMACWithPublicKey(f.claims())) }, 401, "algorithm not allowed"},
		{"unknown kid", func() string { return must(f.iss.SignWith(oidctest.SignOptions{Kid: "unknown"}, f.claims())) }, 401, "signature"},
		{"signed by another key", func() string { return must(f.iss.SignWith(oidctest.SignOptions{Stray: true}, f.claims())) }, 401, "signature"},
		{"claims match no rule", mod(func(c map[string]any) { c["sub"] = "repo:acme/app:ref:refs/heads/dev" }), 403, "match no trust rule"},
		{"replayed after its runner enrolled", func() string { return used }, 401, "already used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := f.nodeCount()
			auditsBefore := len(f.refusals())
			tok := tt.token()
			status, b, _ := f.enrollToken(tok)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, b)
			}
			if msg := errorMessage(t, b); !strings.Contains(msg, tt.reason) {
				t.Fatalf("error %q, want it to contain %q", msg, tt.reason)
			}
			if f.nodeCount() != nodes {
				t.Fatal("a refused enrollment stored a node")
			}
			recs := f.refusals()
			if len(recs) != auditsBefore+1 {
				t.Fatalf("%d refusal records, want %d", len(recs), auditsBefore+1)
			}
			last := recs[len(recs)-1]
			if !strings.Contains(last, tt.reason) {
				t.Fatalf("audit %s does not give the reason %q", last, tt.reason)
			}
			sig := tok[strings.LastIndex(tok, ".")+1:]
			if strings.Contains(last, tok) || len(sig) > 8 && strings.Contains(last, sig) {
				t.Fatal("audit record holds the token")
			}
		})
	}
}

func TestFederatedEnrollmentNeedsExactlyOneCredential(t *testing.T) {
	f := newFedEnv(t, nil)
	a := newAgent()
	req := a.request("latchkey-something", "runner")
	req.IDToken = f.token(f.claims())
	status, b := f.do(f.client, http.MethodPost, wire.PathEnroll, agentHdr(), mustJSON(req))
	if status != http.StatusBadRequest || !strings.Contains(errorMessage(t, b), "exactly one") {
		t.Fatalf("both credentials: %d %s", status, b)
	}
}

func TestFederatedEnrollmentIsRateLimitedPerIP(t *testing.T) {
	f := newFedEnv(t, func(c *Config) {
		c.RateLimits.EnrollPerIP = ratelimit.Limit{Rate: 0.001, Burst: 2}
	})
	for i := range 2 {
		if status, b, _ := f.enrollToken("garbage"); status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d %s", i, status, b)
		}
	}
	if status, b, _ := f.enrollToken(f.token(f.claims())); status != http.StatusTooManyRequests {
		t.Fatalf("third attempt: %d %s, want 429", status, b)
	}
}

func TestTrustRuleAdmin(t *testing.T) {
	f := newFedEnv(t, nil)
	base := wire.TrustRuleRequest{Name: "gitlab", Issuer: "https://gitlab.example.com", Audience: "latch",
		Claims: map[string]string{"sub": "project_path:acme/*:ref_type:branch:ref:main"}, Tags: []wire.Tag{"tag:ci"}}
	bad := []struct {
		name string
		mod  func(*wire.TrustRuleRequest)
		want string
	}{
		{"http issuer", func(r *wire.TrustRuleRequest) { r.Issuer = "http://gitlab.example.com" }, "https"},
		{"sub too wide", func(r *wire.TrustRuleRequest) { r.Claims = map[string]string{"sub": "**"} }, "too wide"},
		{"no sub", func(r *wire.TrustRuleRequest) { r.Claims = map[string]string{"project_path": "acme/app"} }, "sub"},
		{"tag unknown to the policy", func(r *wire.TrustRuleRequest) { r.Tags = []wire.Tag{"tag:prod"} }, "tagOwners"},
		{"lifetime too long", func(r *wire.TrustRuleRequest) { r.MaxLifetime = 48 * time.Hour }, "maximum"},
		{"duplicate name", func(r *wire.TrustRuleRequest) { r.Name = "gha-deploy" }, "already exists"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			tt.mod(&r)
			status, b := f.do(f.client, http.MethodPost, wire.PathTrustRules, f.adminHdr(), mustJSON(r))
			if status < 400 || !strings.Contains(errorMessage(t, b), tt.want) {
				t.Fatalf("%d %s, want an error containing %q", status, b, tt.want)
			}
		})
	}
	// Scope: nodes:read may not, keys:write may.
	reader := f.createToken("reader@example.com", wire.ScopeNodesRead)
	f.as(reader, http.MethodGet, wire.PathTrustRules, nil, http.StatusForbidden, nil)
	writer := f.createToken("ci-admin@example.com", wire.ScopeKeysWrite)
	var created wire.TrustRule
	f.as(writer, http.MethodPost, wire.PathTrustRules, base, http.StatusCreated, &created)
	var rules []wire.TrustRule
	f.as(writer, http.MethodGet, wire.PathTrustRules, nil, http.StatusOK, &rules)
	if len(rules) != 2 || rules[0].Name != "gha-deploy" || rules[1].ID != created.ID {
		t.Fatalf("rules (oldest first) = %+v", rules)
	}
	f.as(writer, http.MethodDelete, wire.PathTrustRules+"/"+created.ID, nil, http.StatusOK, nil)
	f.as(writer, http.MethodDelete, wire.PathTrustRules+"/"+created.ID, nil, http.StatusNotFound, nil)
	for _, action := range []string{store.AuditTrustRuleCreate, store.AuditTrustRuleDelete} {
		recs, _ := f.st.AuditRecords(context.Background(), store.AuditFilter{Action: action})
		if len(recs) == 0 {
			t.Fatalf("no %s audit record", action)
		}
	}
	// Deleting the rule stops its tokens.
	f.as(writer, http.MethodDelete, wire.PathTrustRules+"/gha-deploy", nil, http.StatusOK, nil)
	if status, b, _ := f.enrollToken(f.token(f.claims())); status != http.StatusUnauthorized {
		t.Fatalf("enroll after the rule was deleted: %d %s", status, b)
	}
}
