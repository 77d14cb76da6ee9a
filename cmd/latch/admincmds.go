package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchnet/latch/wire"
)

func keysCreateCommand() *command {
	return &command{
		name:    "create",
		summary: "create an enrollment key (printed once)",
		usage:   "keys create [--reusable] [--ephemeral] [--tags tag:a,tag:b] [--expiry 24h] [--node-expiry 720h | --no-node-expiry] [--max-uses N] [--description TEXT] [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			reusable := fs.Bool("reusable", false, "the key enrolls any number of nodes until it expires")
			ephemeral := fs.Bool("ephemeral", false, "nodes enrolled with the key are ephemeral")
			tags := fs.String("tags", "", "comma-separated `tags` the key grants")
			expiry := fs.Duration("expiry", 24*time.Hour, "lifetime of the key (at most 90 days)")
			desc := fs.String("description", "", "free `text` to recognise the key by")
			nef := addNodeExpiryFlags(fs)
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("keys create", args, 0, ""); err != nil {
					return err
				}
				tl, err := parseTags(*tags)
				if err != nil {
					return usagef("keys create: %v", err)
				}
				if *expiry <= 0 {
					return usagef("keys create: --expiry must be positive")
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				var resp wire.CreateKeyResponse
				req := wire.CreateKeyRequest{Description: *desc, Reusable: *reusable, Ephemeral: *ephemeral, Tags: tl, Expiry: *expiry}
				if err := nef.apply(&req); err != nil {
					return usagef("keys create: %v", err)
				}
				if err := c.do(ctx, http.MethodPost, wire.PathKeys, req, &resp); err != nil {
					return fmt.Errorf("creating key: %w", err)
				}
				if *asJSON {
					return writeJSON(e.stdout, resp)
				}
				fmt.Fprintln(e.stdout, resp.Key)
				fmt.Fprintln(e.stderr, "This enrollment key will not be shown again; keep it secret.")
				printKeyInfo(e.stderr, resp.Info, time.Now())
				return nil
			}
		},
	}
}

func printKeyInfo(w io.Writer, k wire.KeyInfo, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", k.ID)
	if k.Description != "" {
		fmt.Fprintf(tw, "description:\t%s\n", k.Description)
	}
	fmt.Fprintf(tw, "reusable:\t%s\n", yesNo(k.Reusable))
	fmt.Fprintf(tw, "ephemeral:\t%s\n", yesNo(k.Ephemeral))
	fmt.Fprintf(tw, "tags:\t%s\n", tagList(k.Tags))
	fmt.Fprintf(tw, "expires:\t%s\n", relTime(k.Expires, now))
	fmt.Fprintf(tw, "node expiry:\t%s\n", nodeExpiryOf(k))
	if k.MaxUses > 0 {
		fmt.Fprintf(tw, "max uses:\t%d\n", k.MaxUses)
	}
	tw.Flush()
}

func keysListCommand() *command {
	return listCommand("keys", "list enrollment keys", wire.PathKeys, printKeys)
}

func keyState(k wire.KeyInfo, now time.Time) string {
	switch {
	case k.Revoked != nil:
		return "revoked"
	case !now.Before(k.Expires):
		return "expired"
	case !k.Reusable && k.Uses > 0, k.MaxUses > 0 && k.Uses >= k.MaxUses:
		return "used"
	}
	return "active"
}

func printKeys(w io.Writer, keys []wire.KeyInfo, now time.Time) {
	if len(keys) == 0 {
		fmt.Fprintln(w, "no enrollment keys")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tREUSABLE\tEPHEMERAL\tUSES\tTAGS\tEXPIRES\tNODE EXPIRY\tDESCRIPTION")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, keyState(k, now), yesNo(k.Reusable), yesNo(k.Ephemeral),
			usesOf(k), tagList(k.Tags), relTime(k.Expires, now), nodeExpiryOf(k), k.Description)
	}
	tw.Flush()
}

func keysRevokeCommand() *command {
	return deleteCommand("keys", "revoke", "revoke an enrollment key; nodes it enrolled stay", wire.PathKeys, "enrollment key", "key ID")
}

func nodesListCommand() *command {
	return listCommand("nodes", "list nodes", wire.PathNodes, printNodes)
}

func printNodes(w io.Writer, nodes []wire.NodeInfo, now time.Time) {
	if len(nodes) == 0 {
		fmt.Fprintln(w, "no nodes")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tADDRESSES\tTAGS\tONLINE\tSTATE\tLAST SEEN")
	for _, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, n.Name, joinPrefixAddrs(n.Addresses, ","), tagList(n.Tags), yesNo(n.Online),
			nodeState(n), lastSeen(n, now))
	}
	tw.Flush()
}

func lastSeen(n wire.NodeInfo, now time.Time) string {
	switch {
	case n.Online:
		return "now"
	case n.LastSeen.IsZero():
		return "never"
	}
	return relTime(n.LastSeen, now)
}

func nodesShowCommand() *command {
	return &command{
		name:    "show",
		summary: "show one node",
		usage:   "nodes show ID|NAME [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("nodes show", args, 1, "node ID or name"); err != nil {
					return err
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				var n wire.NodeInfo
				if err := c.do(ctx, http.MethodGet, wire.PathNodes+"/"+url.PathEscape(args[0]), nil, &n); err != nil {
					return fmt.Errorf("showing node: %w", err)
				}
				if *asJSON {
					return writeJSON(e.stdout, n)
				}
				printNode(e.stdout, n, time.Now())
				return nil
			}
		},
	}
}

func printNode(w io.Writer, n wire.NodeInfo, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", n.ID)
	fmt.Fprintf(tw, "name:\t%s\n", n.Name)
	fmt.Fprintf(tw, "hostname:\t%s\n", n.Hostname)
	fmt.Fprintf(tw, "addresses:\t%s\n", joinPrefixAddrs(n.Addresses, " "))
	fmt.Fprintf(tw, "key:\t%s\n", n.Key)
	eps := make([]string, len(n.Endpoints))
	for i, ep := range n.Endpoints {
		eps[i] = ep.String()
	}
	fmt.Fprintf(tw, "endpoints:\t%s\n", first(strings.Join(eps, " "), "-"))
	fmt.Fprintf(tw, "tags:\t%s\n", tagList(n.Tags))
	fmt.Fprintf(tw, "ephemeral:\t%s\n", yesNo(n.Ephemeral))
	fmt.Fprintf(tw, "online:\t%s\n", yesNo(n.Online))
	fmt.Fprintf(tw, "last seen:\t%s\n", lastSeen(n, now))
	fmt.Fprintf(tw, "created:\t%s\n", n.Created.UTC().Format(time.RFC3339))
	if n.KeyID != "" {
		fmt.Fprintf(tw, "enrollment key:\t%s\n", n.KeyID)
	}
	printNodeIdentity(tw, n, now)
	tw.Flush()
}

func nodesDeleteCommand() *command {
	return deleteCommand("nodes", "delete", "delete a node: its peers drop it and it can no longer connect", wire.PathNodes, "node", "node ID or name")
}

func nodesRevokeCommand() *command {
	const arg = "node ID or name"
	return &command{
		name:    "revoke",
		summary: "revoke a node: its peers drop it and cut its flows, and its keys can never enroll again",
		usage:   "nodes revoke " + argUsage(arg),
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("nodes revoke", args, 1, arg); err != nil {
					return err
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				if err := c.do(ctx, http.MethodPost, wire.PathNodes+"/"+url.PathEscape(args[0])+"/revoke", nil, nil); err != nil {
					return fmt.Errorf("revoking node: %w", err)
				}
				fmt.Fprintf(e.stdout, "revoked node %s\n", args[0])
				return nil
			}
		},
	}
}
