package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/latchnet/latch/agent/localapi"
)

func rotateCommand() *command {
	return &command{
		name:    "rotate",
		summary: "replace this node's WireGuard key now; peers get the new key from the coordinator",
		usage:   "rotate [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			socket := socketFlag(fs, e)
			asJSON := fs.Bool("json", false, "print the old and new public keys as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("rotate", args, 0, ""); err != nil {
					return err
				}
				resp, err := localapi.NewClient(*socket).Rotate(ctx)
				if err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(e.stdout, resp)
				}
				fmt.Fprintf(e.stdout, "WireGuard key rotated\nold public key: %s\nnew public key: %s\n", resp.OldKey, resp.NewKey)
				return nil
			}
		},
	}
}
