package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchnet/latch/wire"
)

// trustCommand is "latch trust": workload identity trust rules (admin).
func trustCommand() *command {
	return &command{name: "trust", summary: "manage workload identity trust rules: which CI tokens may enroll nodes (admin)",
		sub: []*command{trustCreateCommand(), trustListCommand(), trustDeleteCommand()}}
}

// claimFlags is the repeatable --claim NAME=PATTERN flag.
type claimFlags map[string]string

func (c claimFlags) String() string { return "" }

func (c claimFlags) Set(v string) error {
	name, pat, ok := strings.Cut(v, "=")
	if !ok || name == "" || pat == "" {
		return fmt.Errorf("want NAME=PATTERN, like sub=repo:acme/app:ref:refs/heads/main")
	}
	if _, dup := c[name]; dup {
		return fmt.Errorf("claim %s given twice", name)
	}
	c[name] = pat
	return nil
}

func trustCreateCommand() *command {
	return &command{
		name:    "create",
		summary: "create a trust rule: tokens of ISSUER for AUDIENCE whose claims all match may enroll a node",
		usage: "trust create --name NAME --issuer URL --audience AUD --claim sub=PATTERN [--claim NAME=PATTERN ...]\n" +
			"             --tags tag:a[,tag:b] [--ephemeral] [--max-lifetime 1h] [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			name := fs.String("name", "", "`NAME` of the rule (lowercase letters, digits, dashes)")
			issuer := fs.String("issuer", "", "issuer `URL` of the CI's OIDC tokens (https only), the tokens' iss")
			audience := fs.String("audience", "", "`AUDIENCE` the tokens must carry in aud")
			claims := claimFlags{}
			fs.Var(claims, "claim", "`NAME=PATTERN` a token claim must match (repeatable; sub is required); "+
				"* matches within a segment (not / or :), ** matches anything")
			tags := fs.String("tags", "", "comma-separated `tags` the enrolled nodes get (known to the policy)")
			ephemeral := fs.Bool("ephemeral", false, "enrolled nodes are ephemeral (removed when they go away)")
			lifetime := fs.Duration("max-lifetime", time.Hour, "key lifetime of enrolled nodes (at most 24h)")
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("trust create", args, 0, ""); err != nil {
					return err
				}
				switch {
				case *name == "":
					return usagef("trust create: --name required")
				case *issuer == "":
					return usagef("trust create: --issuer required")
				case *audience == "":
					return usagef("trust create: --audience required")
				case claims["sub"] == "":
					return usagef("trust create: --claim sub=PATTERN required")
				case *lifetime <= 0:
					return usagef("trust create: --max-lifetime must be positive")
				}
				tl, err := parseTags(*tags)
				if err != nil {
					return usagef("trust create: %v", err)
				}
				if len(tl) == 0 {
					return usagef("trust create: --tags required")
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				req := wire.TrustRuleRequest{Name: *name, Issuer: *issuer, Audience: *audience, Claims: claims,
					Tags: tl, Ephemeral: *ephemeral, MaxLifetime: *lifetime}
				var rule wire.TrustRule
				if err := c.do(ctx, http.MethodPost, wire.PathTrustRules, req, &rule); err != nil {
					return fmt.Errorf("creating trust rule: %w", err)
				}
				if *asJSON {
					return writeJSON(e.stdout, rule)
				}
				printTrustRule(e.stdout, rule)
				return nil
			}
		},
	}
}

func trustListCommand() *command {
	return listCommand("trust", "list trust rules, in the order enrollment tries them", wire.PathTrustRules, printTrustRules)
}

func trustDeleteCommand() *command {
	return deleteCommand("trust", "delete", "delete a trust rule (by ID or name); nodes it enrolled stay", wire.PathTrustRules, "trust rule", "rule ID")
}

func printTrustRule(w io.Writer, r wire.TrustRule) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", r.ID)
	fmt.Fprintf(tw, "name:\t%s\n", r.Name)
	fmt.Fprintf(tw, "issuer:\t%s\n", r.Issuer)
	fmt.Fprintf(tw, "audience:\t%s\n", r.Audience)
	fmt.Fprintf(tw, "claims:\t%s\n", claimList(r.Claims))
	fmt.Fprintf(tw, "tags:\t%s\n", tagList(r.Tags))
	fmt.Fprintf(tw, "ephemeral:\t%s\n", yesNo(r.Ephemeral))
	fmt.Fprintf(tw, "max lifetime:\t%s\n", r.MaxLifetime)
	tw.Flush()
}

func printTrustRules(w io.Writer, rules []wire.TrustRule, now time.Time) {
	if len(rules) == 0 {
		fmt.Fprintln(w, "no trust rules")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tISSUER\tAUDIENCE\tCLAIMS\tTAGS\tEPHEMERAL\tMAX LIFETIME\tUSES\tCREATED")
	for _, r := range rules {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.ID, r.Name, r.Issuer, r.Audience, claimList(r.Claims),
			tagList(r.Tags), yesNo(r.Ephemeral), r.MaxLifetime, r.Uses, relTime(r.Created, now))
	}
	tw.Flush()
}

// claimList formats claims as "sub=...,name=..." with sub first.
func claimList(c map[string]string) string {
	names := make([]string, 0, len(c))
	for n := range c {
		if n != "sub" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	if _, ok := c["sub"]; ok {
		names = append([]string{"sub"}, names...)
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + c[n]
	}
	return strings.Join(parts, " ")
}

// fingerprintRE matches a CA fingerprint as latch-coordinator prints it
// (colons between bytes, as openssl prints them, are accepted).
var fingerprintRE = regexp.MustCompile(`^sha256:([0-9a-fA-F]{64}|([0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2})$`)

// idTokenFlags are latch up's workload identity flags.
type idTokenFlags struct {
	token, file, fingerprint *string
	e                        *env
}

func addIDTokenFlags(fs *flag.FlagSet, e *env) *idTokenFlags {
	return &idTokenFlags{
		token: fs.String("id-token", "", "workload identity (OIDC) `token` from the CI to enroll with instead of a key (env LATCH_ID_TOKEN)"),
		file:  fs.String("id-token-file", "", "read the ID token from `file`"),
		fingerprint: fs.String("ca-fingerprint", e.getenv("LATCH_CA_FINGERPRINT"),
			"coordinator CA fingerprint `sha256:HEX` to pin; required with an ID token (env LATCH_CA_FINGERPRINT)"),
		e: e,
	}
}

// resolve returns the ID token to enroll with ("" for none) and the CA
// fingerprint. Explicit flags win over LATCH_ID_TOKEN; an explicit
// --auth-key wins over the environment's token.
func (f *idTokenFlags) resolve(authKey string) (token, fingerprint string, err error) {
	switch {
	case *f.token != "" && *f.file != "":
		return "", "", usagef("up: pass --id-token or --id-token-file, not both")
	case *f.token != "":
		token = *f.token
	case *f.file != "":
		b, err := os.ReadFile(*f.file)
		if err != nil {
			return "", "", fmt.Errorf("reading ID token: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return "", "", fmt.Errorf("reading ID token: %s is empty", *f.file)
		}
	case authKey == "":
		token = strings.TrimSpace(f.e.getenv("LATCH_ID_TOKEN"))
	}
	if token == "" {
		return "", "", nil
	}
	if authKey != "" && (*f.token != "" || *f.file != "") {
		return "", "", usagef("up: pass --auth-key or an ID token, not both")
	}
	if strings.Count(token, ".") != 2 {
		return "", "", usagef("up: the ID token is not a JWT (want header.payload.signature)")
	}
	if *f.fingerprint == "" {
		return "", "", usagef("up: an ID token needs --ca-fingerprint sha256:... (env LATCH_CA_FINGERPRINT) to pin the coordinator")
	}
	if !fingerprintRE.MatchString(*f.fingerprint) {
		return "", "", usagef(`up: --ca-fingerprint: want "sha256:" and 64 hex digits`)
	}
	return token, *f.fingerprint, nil
}
