// Package federation is workload identity federation: it validates trust
// rules, verifies CI-issued OpenID Connect ID tokens against their
// issuer's discovery document and JWKS (github.com/coreos/go-oidc), and
// picks the trust rule whose claim patterns a verified token satisfies.
//
// A trust rule names an issuer (https only), an audience and patterns over
// the token's claims; a token that verifies and matches every pattern of a
// rule may enroll a node with the rule's tags, ephemerality and maximum
// lifetime. Rules are tried in the order given (the store lists them
// oldest first) and the first match decides.
//
// Patterns are anchored: a pattern matches a whole claim value. "*" stands
// for one or more characters other than "/" and ":" (it stays within a
// path segment), "**" for one or more characters of any kind; every other
// character matches itself.
package federation

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/latchnet/latch/wire"
)

// Limits of a trust rule.
const (
	// DefaultMaxLifetime is a rule's MaxLifetime when none is given.
	DefaultMaxLifetime = time.Hour
	// MaxMaxLifetime is the longest MaxLifetime a rule may set.
	MaxMaxLifetime = 24 * time.Hour
	// MinMaxLifetime is the shortest.
	MinMaxLifetime = time.Minute

	maxNameLen     = 63
	maxIssuerLen   = 512
	maxAudienceLen = 256
	maxClaims      = 16
	maxClaimName   = 64
	maxPatternLen  = 512
	maxTags        = 16
)

// reservedClaims are checked by verification itself, not by patterns.
var reservedClaims = []string{"iss", "aud", "exp", "nbf", "iat"}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// Validate checks a trust rule request and returns it normalized: the
// default MaxLifetime filled in, tags sorted without duplicates. known
// reports whether the current policy knows a tag; nil accepts every
// well-formed tag (there is no policy yet). The error is one line, fit to
// show to the caller.
func Validate(req wire.TrustRuleRequest, known func(wire.Tag) bool) (wire.TrustRuleRequest, error) {
	if !nameRE.MatchString(req.Name) || len(req.Name) > maxNameLen {
		return req, fmt.Errorf("name %q: want 1 to %d lowercase letters, digits and inner dashes", truncate(req.Name, 70), maxNameLen)
	}
	if err := CheckIssuer(req.Issuer); err != nil {
		return req, err
	}
	if req.Audience == "" || len(req.Audience) > maxAudienceLen || strings.TrimSpace(req.Audience) != req.Audience {
		return req, fmt.Errorf("audience: want 1 to %d characters without surrounding spaces", maxAudienceLen)
	}
	if len(req.Claims) > maxClaims {
		return req, fmt.Errorf("more than %d claim patterns", maxClaims)
	}
	for name, pat := range req.Claims {
		if err := checkClaimName(name); err != nil {
			return req, err
		}
		if _, err := CompilePattern(pat); err != nil {
			return req, fmt.Errorf("claim %s: %w", name, err)
		}
	}
	sub, ok := req.Claims["sub"]
	if !ok {
		return req, errors.New(`claims: a "sub" pattern is required`)
	}
	if strings.Trim(sub, "*") == "" {
		return req, fmt.Errorf(`claim sub: pattern %q is too wide (it matches every subject of the issuer)`, sub)
	}
	if len(req.Tags) == 0 {
		return req, errors.New("tags: at least one tag is required (federated nodes are tagged identities)")
	}
	if len(req.Tags) > maxTags {
		return req, fmt.Errorf("more than %d tags", maxTags)
	}
	for _, t := range req.Tags {
		name, ok := strings.CutPrefix(string(t), "tag:")
		if !ok || !nameRE.MatchString(name) || len(name) > maxNameLen {
			return req, fmt.Errorf("tag %q: want tag:<name> with lowercase letters, digits and inner dashes", truncate(string(t), 70))
		}
		if known != nil && !known(t) {
			return req, fmt.Errorf("tag %s is not in the policy's tagOwners", t)
		}
	}
	switch {
	case req.MaxLifetime < 0:
		return req, errors.New("max lifetime must not be negative")
	case req.MaxLifetime == 0:
		req.MaxLifetime = DefaultMaxLifetime
	case req.MaxLifetime < MinMaxLifetime:
		return req, fmt.Errorf("max lifetime %s is below the minimum of %s", req.MaxLifetime, MinMaxLifetime)
	case req.MaxLifetime > MaxMaxLifetime:
		return req, fmt.Errorf("max lifetime %s exceeds the maximum of %s", req.MaxLifetime, MaxMaxLifetime)
	}
	tags := slices.Clone(req.Tags)
	slices.Sort(tags)
	req.Tags = slices.Compact(tags)
	claims := make(map[string]string, len(req.Claims))
	for k, v := range req.Claims {
		claims[k] = v
	}
	req.Claims = claims
	return req, nil
}

// CheckIssuer accepts an absolute https URL without query, fragment or
// user info: the form an OIDC issuer identifier takes.
func CheckIssuer(issuer string) error {
	if issuer == "" || len(issuer) > maxIssuerLen {
		return fmt.Errorf("issuer: want an https URL of at most %d characters", maxIssuerLen)
	}
	u, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("issuer %q: not a URL", truncate(issuer, 100))
	}
	switch {
	case u.Scheme != "https":
		return fmt.Errorf("issuer %q: must be an https URL", truncate(issuer, 100))
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return fmt.Errorf("issuer %q: want https://host[:port][/path] without user, query or fragment", truncate(issuer, 100))
	}
	return nil
}

func checkClaimName(name string) error {
	if name == "" || len(name) > maxClaimName {
		return fmt.Errorf("claim name %q: want 1 to %d characters", truncate(name, 70), maxClaimName)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return fmt.Errorf("claim name %q: only letters, digits, '_', '-' and '.'", truncate(name, 70))
		}
	}
	if slices.Contains(reservedClaims, name) {
		return fmt.Errorf("claim %s: checked by verification itself, not by a pattern (set the rule's issuer or audience)", name)
	}
	return nil
}

// Pattern is a compiled claim pattern.
type Pattern struct {
	src string
	re  *regexp.Regexp
}

// CompilePattern compiles a claim pattern (see the package comment). Empty
// patterns, runs of three or more "*" and control characters are refused.
func CompilePattern(p string) (Pattern, error) {
	if p == "" || len(p) > maxPatternLen {
		return Pattern{}, fmt.Errorf("pattern: want 1 to %d characters", maxPatternLen)
	}
	if strings.Contains(p, "***") {
		return Pattern{}, fmt.Errorf("pattern %q: use * (within a segment) or ** (anything), not ***", truncate(p, 100))
	}
	var b strings.Builder
	b.WriteString(`^`)
	for i := 0; i < len(p); {
		switch {
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(`.+`)
			i += 2
		case p[i] == '*':
			b.WriteString(`[^/:]+`)
			i++
		default:
			if p[i] < 0x20 || p[i] == 0x7f {
				return Pattern{}, fmt.Errorf("pattern %q: control character", truncate(p, 100))
			}
			j := i
			for j < len(p) && p[j] != '*' {
				j++
			}
			b.WriteString(regexp.QuoteMeta(p[i:j]))
			i = j
		}
	}
	b.WriteString(`$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return Pattern{}, fmt.Errorf("pattern %q: %w", truncate(p, 100), err)
	}
	return Pattern{src: p, re: re}, nil
}

// Match reports whether the whole of v matches.
func (p Pattern) Match(v string) bool { return p.re != nil && p.re.MatchString(v) }

// String returns the pattern as written.
func (p Pattern) String() string { return p.src }

// truncate shortens s to n bytes for error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
