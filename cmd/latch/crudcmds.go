package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// listCommand builds "<noun> list [--json]": GET path into []T, printed
// by print or as JSON.
func listCommand[T any](noun, summary, path string, print func(io.Writer, []T, time.Time)) *command {
	return &command{
		name:    "list",
		summary: summary,
		usage:   noun + " list [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(noun+" list", args, 0, ""); err != nil {
					return err
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				items := []T{}
				if err := c.do(ctx, http.MethodGet, path, nil, &items); err != nil {
					return fmt.Errorf("listing %s: %w", noun, err)
				}
				if *asJSON {
					return writeJSON(e.stdout, items)
				}
				print(e.stdout, items, time.Now())
				return nil
			}
		},
	}
}

// deleteCommand builds "<noun> <verb> ID": DELETE path/ID. what names the
// object in messages ("enrollment key"), arg names the argument ("key ID").
func deleteCommand(noun, verb, summary, path, what, arg string) *command {
	return &command{
		name:    verb,
		summary: summary,
		usage:   noun + " " + verb + " " + argUsage(arg),
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(noun+" "+verb, args, 1, arg); err != nil {
					return err
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				if err := c.do(ctx, http.MethodDelete, path+"/"+url.PathEscape(args[0]), nil, nil); err != nil {
					return fmt.Errorf("%s %s: %w", gerund(verb), what, err)
				}
				fmt.Fprintf(e.stdout, "%sd %s %s\n", verb, what, args[0]) // revoked, deleted
				return nil
			}
		},
	}
}

// argUsage turns "node ID or name" into the usage form "ID|NAME".
func argUsage(arg string) string {
	if arg == "node ID or name" {
		return "ID|NAME"
	}
	return "ID"
}

// gerund returns "revoking" for "revoke", "deleting" for "delete".
func gerund(verb string) string { return trimE(verb) + "ing" }

func trimE(verb string) string {
	if n := len(verb); n > 0 && verb[n-1] == 'e' {
		return verb[:n-1]
	}
	return verb
}
