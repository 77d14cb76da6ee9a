package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/latchnet/latch/wire"
)

// Node identity verbs (admin): expiry, quarantine, tags.

const nodeArg = "node ID or name"

// nodeActionCommand builds "nodes VERB ID|NAME ...": it POSTs what body
// returns to PathNodes/{ref}+path and prints the node's new state with
// done; op names the action in errors. body may define flags and check the remaining arguments.
func nodeActionCommand(verb, op, summary, usage, path string, nargs int, argWhat string,
	body func(fs *flag.FlagSet) func(args []string) (any, error), done func(w io.Writer, ref string, n wire.NodeInfo)) *command {
	return &command{
		name:    verb,
		summary: summary,
		usage:   "nodes " + verb + " " + usage,
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			asJSON := fs.Bool("json", false, "print the node as JSON")
			mk := body(fs)
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("nodes "+verb, args, 1+nargs, argWhat); err != nil {
					return err
				}
				in, err := mk(args[1:])
				if err != nil {
					return usagef("nodes %s: %v", verb, err)
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				var n wire.NodeInfo
				if err := c.do(ctx, http.MethodPost, wire.PathNodes+"/"+url.PathEscape(args[0])+path, in, &n); err != nil {
					return fmt.Errorf("%s: %w", op, err)
				}
				if *asJSON {
					return writeJSON(e.stdout, n)
				}
				done(e.stdout, args[0], n)
				return nil
			}
		},
	}
}

func nodesExpireCommand() *command {
	return nodeActionCommand("expire", "expiring node", "expire a node's key now: every peer drops it and it can no longer renew its certificate",
		"ID|NAME [--json]", wire.PathNodeExpiry, 0, nodeArg,
		func(fs *flag.FlagSet) func([]string) (any, error) {
			return func([]string) (any, error) { return wire.SetNodeExpiryRequest{Now: true}, nil }
		},
		func(w io.Writer, ref string, n wire.NodeInfo) { fmt.Fprintf(w, "expired node %s\n", ref) })
}

func nodesExpiryCommand() *command {
	return nodeActionCommand("expiry", "setting node key expiry", "set when a node's key expires: --in DURATION from now, or --never (tagged nodes only)",
		"ID|NAME (--in 720h | --never) [--json]", wire.PathNodeExpiry, 0, nodeArg,
		func(fs *flag.FlagSet) func([]string) (any, error) {
			in := fs.Duration("in", 0, "the key expires this `duration` from now (an expired node comes back)")
			never := fs.Bool("never", false, "the key never expires (tagged server nodes only)")
			return func([]string) (any, error) {
				switch {
				case (*in != 0) == *never:
					return nil, fmt.Errorf("pass exactly one of --in and --never")
				case *in < 0:
					return nil, fmt.Errorf("--in must be positive")
				}
				return wire.SetNodeExpiryRequest{In: *in, Never: *never}, nil
			}
		},
		func(w io.Writer, ref string, n wire.NodeInfo) {
			fmt.Fprintf(w, "node %s key expires %s\n", ref, keyExpiryStr(n, time.Now()))
		})
}

func nodesQuarantineCommand() *command {
	return nodeActionCommand("quarantine", "quarantining node", "quarantine a node: within a second it keeps only what rules naming status:quarantined allow",
		"ID|NAME [--reason TEXT] [--json]", wire.PathNodeQuarantine, 0, nodeArg,
		func(fs *flag.FlagSet) func([]string) (any, error) {
			reason := fs.String("reason", "", "`text` saying why, kept in the audit log and shown by nodes show")
			return func([]string) (any, error) { return wire.QuarantineRequest{Reason: *reason}, nil }
		},
		func(w io.Writer, ref string, n wire.NodeInfo) { fmt.Fprintf(w, "quarantined node %s\n", ref) })
}

func nodesUnquarantineCommand() *command {
	return nodeActionCommand("unquarantine", "releasing node from quarantine", "release a node from quarantine: its access is restored at once",
		"ID|NAME [--json]", wire.PathNodeUnquarantine, 0, nodeArg,
		func(fs *flag.FlagSet) func([]string) (any, error) {
			return func([]string) (any, error) { return struct{}{}, nil }
		},
		func(w io.Writer, ref string, n wire.NodeInfo) {
			fmt.Fprintf(w, "released node %s from quarantine\n", ref)
		})
}

func nodesTagCommand() *command {
	return nodeActionCommand("tag", "tagging node", "replace a node's tags (each must be in the policy's tagOwners); \"\" removes them all",
		"ID|NAME tag:a,tag:b [--json]", wire.PathNodeTags, 1, "node ID or name and tags",
		func(fs *flag.FlagSet) func([]string) (any, error) {
			return func(args []string) (any, error) {
				tags, err := parseTags(args[0])
				if err != nil {
					return nil, err
				}
				return wire.SetNodeTagsRequest{Tags: nonNil(tags)}, nil
			}
		},
		func(w io.Writer, ref string, n wire.NodeInfo) {
			fmt.Fprintf(w, "node %s tags: %s\n", ref, tagList(n.Tags))
		})
}

func nonNil(t []wire.Tag) []wire.Tag {
	if t == nil {
		return []wire.Tag{}
	}
	return t
}

// nodeState is a node's identity state for nodes list: "expired",
// "quarantined" (both, comma-separated) or "ok".
func nodeState(n wire.NodeInfo) string {
	var s []string
	if n.Expired {
		s = append(s, "expired")
	}
	if n.Quarantined {
		s = append(s, "quarantined")
	}
	if len(s) == 0 {
		return "ok"
	}
	return strings.Join(s, ",")
}

// keyExpiryStr renders a node's key expiry.
func keyExpiryStr(n wire.NodeInfo, now time.Time) string {
	switch {
	case n.KeyExpiry.IsZero():
		return "never"
	case n.Expired:
		return "expired " + relTime(n.KeyExpiry, now)
	}
	return relTime(n.KeyExpiry, now)
}

// printNodeIdentity adds a node's identity state to `nodes show`.
func printNodeIdentity(w io.Writer, n wire.NodeInfo, now time.Time) {
	fmt.Fprintf(w, "key expiry:\t%s\n", keyExpiryStr(n, now))
	cert := "unknown"
	if !n.CertExpires.IsZero() {
		cert = relTime(n.CertExpires, now)
	}
	fmt.Fprintf(w, "certificate expires:\t%s\n", cert)
	q := "no"
	if n.Quarantined {
		q = "yes"
		if n.QuarantineReason != "" {
			q += " (" + n.QuarantineReason + ")"
		}
	}
	fmt.Fprintf(w, "quarantined:\t%s\n", q)
	fmt.Fprintf(w, "posture:\t%s\n", postureStr(n.Posture))
	if n.TrustRule != "" {
		fmt.Fprintf(w, "trust rule:\t%s\n", n.TrustRule)
	}
}

// postureStr renders a posture as "os=linux agent_version=0.4.0 ...",
// in wire.PostureAttributes order.
func postureStr(p *wire.Posture) string {
	attrs := p.Attrs()
	if len(attrs) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range wire.PostureAttributes {
		if v, ok := attrs[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " ")
}

// nodeExpiryFlags are keys create's node expiry and use bound flags.
type nodeExpiryFlags struct {
	nodeExpiry   *time.Duration
	noNodeExpiry *bool
	maxUses      *int
}

func addNodeExpiryFlags(fs *flag.FlagSet) *nodeExpiryFlags {
	return &nodeExpiryFlags{
		nodeExpiry:   fs.Duration("node-expiry", 0, "key lifetime of the nodes it enrolls (default: the coordinator's --node-key-expiry)"),
		noNodeExpiry: fs.Bool("no-node-expiry", false, "nodes it enrolls never expire (needs --tags: server nodes only)"),
		maxUses:      fs.Int("max-uses", 0, "enroll at most `N` nodes (needs --reusable; 0: no bound)"),
	}
}

// apply checks the flags and sets them on req.
func (f *nodeExpiryFlags) apply(req *wire.CreateKeyRequest) error {
	switch {
	case *f.nodeExpiry < 0:
		return fmt.Errorf("--node-expiry must be positive")
	case *f.nodeExpiry != 0 && *f.noNodeExpiry:
		return fmt.Errorf("--node-expiry and --no-node-expiry exclude each other")
	case *f.noNodeExpiry && len(req.Tags) == 0:
		return fmt.Errorf("--no-node-expiry needs --tags: only tagged nodes may never expire")
	case *f.maxUses < 0:
		return fmt.Errorf("--max-uses must not be negative")
	case *f.maxUses > 0 && !req.Reusable:
		return fmt.Errorf("--max-uses needs --reusable")
	}
	req.NodeExpiry, req.NoNodeExpiry, req.MaxUses = *f.nodeExpiry, *f.noNodeExpiry, *f.maxUses
	return nil
}

// nodeExpiryOf renders a key's node expiry for keys list and create.
func nodeExpiryOf(k wire.KeyInfo) string {
	switch {
	case k.NoNodeExpiry:
		return "never"
	case k.NodeExpiry == 0:
		return "default"
	}
	return k.NodeExpiry.String()
}

// usesOf renders a key's uses and bound: "3", "3/5".
func usesOf(k wire.KeyInfo) string {
	if k.MaxUses > 0 {
		return fmt.Sprintf("%d/%d", k.Uses, k.MaxUses)
	}
	return fmt.Sprint(k.Uses)
}
