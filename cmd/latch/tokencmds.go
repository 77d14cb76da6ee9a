package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchnet/latch/wire"
)

// tokenScopes are the scopes a token may carry (wire/admin.go).
var tokenScopes = []string{
	wire.ScopeAdmin, wire.ScopeNodesRead, wire.ScopeNodesWrite, wire.ScopeKeysWrite,
	wire.ScopePolicyWrite, wire.ScopeAccessApprove, wire.ScopeAuditRead,
}

// parseScopes parses a comma-separated scope list.
func parseScopes(s string) ([]string, error) {
	var out []string
	for _, sc := range strings.Split(s, ",") {
		sc = strings.TrimSpace(sc)
		if sc == "" {
			continue
		}
		if !slices.Contains(tokenScopes, sc) {
			return nil, fmt.Errorf("unknown scope %q (known: %s)", sc, strings.Join(tokenScopes, ", "))
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--scopes is required (known: %s)", strings.Join(tokenScopes, ", "))
	}
	return out, nil
}

func tokensCreateCommand() *command {
	return &command{
		name:    "create",
		summary: "create an admin API token (printed once)",
		usage:   "tokens create --user USER --scopes s1,s2 [--expiry 720h] [--description TEXT] [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			user := fs.String("user", "", "the `user` the token acts for, e.g. alice@example.com (required; policy approvers and groups name users)")
			scopes := fs.String("scopes", "", "comma-separated `scopes`: "+strings.Join(tokenScopes, ", ")+" (required)")
			expiry := fs.Duration("expiry", 0, "lifetime of the token (default 90 days)")
			desc := fs.String("description", "", "free `text` to recognise the token by")
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("tokens create", args, 0, ""); err != nil {
					return err
				}
				if strings.TrimSpace(*user) == "" {
					return usagef("tokens create: --user is required")
				}
				sc, err := parseScopes(*scopes)
				if err != nil {
					return usagef("tokens create: %v", err)
				}
				if *expiry < 0 {
					return usagef("tokens create: --expiry must be positive")
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				var resp wire.CreateTokenResponse
				req := wire.CreateTokenRequest{User: strings.TrimSpace(*user), Scopes: sc, Description: *desc, Expiry: *expiry}
				if err := c.do(ctx, http.MethodPost, wire.PathTokens, req, &resp); err != nil {
					return fmt.Errorf("creating token: %w", err)
				}
				if *asJSON {
					return writeJSON(e.stdout, resp)
				}
				fmt.Fprintln(e.stdout, resp.Token)
				fmt.Fprintln(e.stderr, "This API token will not be shown again; keep it secret.")
				printTokenInfo(e.stderr, resp.Info, time.Now())
				return nil
			}
		},
	}
}

func printTokenInfo(w io.Writer, t wire.TokenInfo, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", t.ID)
	fmt.Fprintf(tw, "user:\t%s\n", t.User)
	fmt.Fprintf(tw, "scopes:\t%s\n", strings.Join(t.Scopes, ","))
	if t.Description != "" {
		fmt.Fprintf(tw, "description:\t%s\n", t.Description)
	}
	fmt.Fprintf(tw, "expires:\t%s\n", tokenExpires(t, now))
	tw.Flush()
}

func tokenExpires(t wire.TokenInfo, now time.Time) string {
	if t.Expires.IsZero() {
		return "never"
	}
	return relTime(t.Expires, now)
}

func tokenState(t wire.TokenInfo, now time.Time) string {
	switch {
	case t.Revoked != nil:
		return "revoked"
	case !t.Expires.IsZero() && !now.Before(t.Expires):
		return "expired"
	}
	return "active"
}

func tokensListCommand() *command {
	return listCommand("tokens", "list admin API tokens", wire.PathTokens, printTokens)
}

func printTokens(w io.Writer, tokens []wire.TokenInfo, now time.Time) {
	if len(tokens) == 0 {
		fmt.Fprintln(w, "no API tokens")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tSCOPES\tSTATE\tEXPIRES\tDESCRIPTION")
	for _, t := range tokens {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.User, strings.Join(t.Scopes, ","), tokenState(t, now), tokenExpires(t, now), t.Description)
	}
	tw.Flush()
}

func tokensRevokeCommand() *command {
	return deleteCommand("tokens", "revoke", "revoke an admin API token: it stops working at once", wire.PathTokens, "API token", "token ID")
}
