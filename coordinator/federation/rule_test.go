package federation

import (
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pat, val string
		want     bool
	}{
		{"repo:acme/app:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/main", true},
		{"repo:acme/app:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/main2", false},
		{"repo:acme/app:ref:refs/heads/main", "xrepo:acme/app:ref:refs/heads/main", false},
		{"repo:acme/*:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/main", true},
		{"repo:acme/*:ref:refs/heads/main", "repo:acme/a/b:ref:refs/heads/main", false},
		{"repo:acme/*:ref:refs/heads/main", "repo:acme/x:y:ref:refs/heads/main", false},
		{"repo:acme/*:ref:refs/heads/main", "repo:acme/:ref:refs/heads/main", false},
		{"repo:acme/app:**", "repo:acme/app:ref:refs/heads/a/b", true},
		{"repo:acme/app:**", "repo:acme/app:", false},
		{"project_path:acme/*", "project_path:acme/app", true},
		{"a.b", "aXb", false},
		{"(x)+", "(x)+", true},
		{"(x)+", "xx", false},
		{"*", "", false},
		{"1234", "1234", true},
	}
	for _, tt := range tests {
		p, err := CompilePattern(tt.pat)
		if err != nil {
			t.Fatalf("%q: %v", tt.pat, err)
		}
		if got := p.Match(tt.val); got != tt.want {
			t.Errorf("%q match %q = %v, want %v", tt.pat, tt.val, got, tt.want)
		}
		if got := naiveMatch(tt.pat, tt.val); got != tt.want {
			t.Errorf("reference: %q match %q = %v, want %v", tt.pat, tt.val, got, tt.want)
		}
	}
}

// naiveMatch is a reference matcher by recursion.
func naiveMatch(p, s string) bool {
	switch {
	case p == "":
		return s == ""
	case strings.HasPrefix(p, "**"):
		for i := 1; i <= len(s); i++ {
			if naiveMatch(p[2:], s[i:]) {
				return true
			}
		}
		return false
	case p[0] == '*':
		for i := 1; i <= len(s) && !strings.ContainsAny(s[i-1:i], "/:"); i++ {
			if naiveMatch(p[1:], s[i:]) {
				return true
			}
		}
		return false
	}
	return s != "" && p[0] == s[0] && naiveMatch(p[1:], s[1:])
}

func FuzzPatternAgainstReference(f *testing.F) {
	f.Add("repo:*/app:**", "repo:acme/app:ref:x")
	f.Add("a*b**c", "aXXbYY/Zc")
	f.Fuzz(func(t *testing.T, p, s string) {
		if len(s) > 32 || len(p) > 16 || strings.Count(p, "*") > 4 {
			return // keep the exponential reference fast
		}
		cp, err := CompilePattern(p)
		if err != nil {
			return
		}
		if got, want := cp.Match(s), naiveMatch(p, s); got != want {
			t.Fatalf("%q match %q = %v, reference %v", p, s, got, want)
		}
	})
}

func TestValidate(t *testing.T) {
	good := wire.TrustRuleRequest{
		Name: "gha-deploy", Issuer: "https://token.actions.example.com", Audience: "latch",
		Claims: map[string]string{"sub": "repo:acme/app:ref:refs/heads/main"},
		Tags:   []wire.Tag{"tag:ci", "tag:ci"},
	}
	got, err := Validate(good, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.MaxLifetime != time.Hour || len(got.Tags) != 1 {
		t.Fatalf("normalized = %+v", got)
	}
	known := func(t wire.Tag) bool { return t == "tag:ci" }
	tests := []struct {
		name string
		mod  func(*wire.TrustRuleRequest)
		want string
	}{
		{"http issuer", func(r *wire.TrustRuleRequest) { r.Issuer = "http://token.actions.example.com" }, "https"},
		{"issuer with query", func(r *wire.TrustRuleRequest) { r.Issuer = "https://x.example/?a=b" }, "without"},
		{"no sub", func(r *wire.TrustRuleRequest) { r.Claims = map[string]string{"repository_owner": "acme"} }, `"sub" pattern is required`},
		{"sub *", func(r *wire.TrustRuleRequest) { r.Claims = map[string]string{"sub": "*"} }, "too wide"},
		{"sub **", func(r *wire.TrustRuleRequest) { r.Claims = map[string]string{"sub": "**"} }, "too wide"},
		{"sub ***", func(r *wire.TrustRuleRequest) { r.Claims = map[string]string{"sub": "repo:***"} }, "***"},
		{"reserved claim", func(r *wire.TrustRuleRequest) { r.Claims = map[string]string{"sub": "x", "aud": "y"} }, "checked by verification"},
		{"empty pattern", func(r *wire.TrustRuleRequest) { r.Claims = map[string]string{"sub": "x", "ref": ""} }, "pattern"},
		{"no audience", func(r *wire.TrustRuleRequest) { r.Audience = "" }, "audience"},
		{"bad name", func(r *wire.TrustRuleRequest) { r.Name = "GHA deploy" }, "name"},
		{"no tags", func(r *wire.TrustRuleRequest) { r.Tags = nil }, "at least one tag"},
		{"unknown tag", func(r *wire.TrustRuleRequest) { r.Tags = []wire.Tag{"tag:prod"} }, "tagOwners"},
		{"bad tag", func(r *wire.TrustRuleRequest) { r.Tags = []wire.Tag{"ci"} }, "tag:<name>"},
		{"lifetime too long", func(r *wire.TrustRuleRequest) { r.MaxLifetime = 25 * time.Hour }, "maximum"},
		{"lifetime too short", func(r *wire.TrustRuleRequest) { r.MaxLifetime = time.Second }, "minimum"},
		{"negative lifetime", func(r *wire.TrustRuleRequest) { r.MaxLifetime = -time.Hour }, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			r.Claims = map[string]string{"sub": "repo:acme/app:ref:refs/heads/main"}
			tt.mod(&r)
			_, err := Validate(r, known)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

// The generated expressions never let "*" cross a segment.
func TestPatternRegexpShape(t *testing.T) {
	p, _ := CompilePattern("a*b**c")
	if want := `^a[^/:]+b.+c$`; p.re.String() != want {
		t.Fatalf("regexp = %s, want %s", p.re, want)
	}
}
