package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

func policyCheckCommand() *command {
	return &command{
		name:    "check",
		summary: "validate a policy file and run its tests, locally (no coordinator needed)",
		usage:   "policy check FILE",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("policy check", args, 1, "policy FILE"); err != nil {
					return err
				}
				file := args[0]
				src, err := os.ReadFile(file)
				if err != nil {
					return fmt.Errorf("reading policy: %w", err)
				}
				p, err := checkPolicy(src)
				if err != nil {
					return placePolicyError(file, err)
				}
				fmt.Fprintf(e.stdout, "%s: ok (%s, %s passed)\n", file, plural(len(p.Rules), "rule"), plural(len(p.Tests), "test"))
				return nil
			}
		},
	}
}

// checkPolicy parses src and runs the policy's tests, as the coordinator
// does before it saves a policy.
func checkPolicy(src []byte) (*policy.Policy, error) {
	p, err := policy.Parse(src)
	if err != nil {
		return nil, err
	}
	if err := p.RunTests(); err != nil {
		return nil, err
	}
	return p, nil
}

// placePolicyError renders a refused policy compiler style:
// "FILE:LINE:COL: reason", or "FILE: reason" when it has no place.
func placePolicyError(file string, err error) error {
	var pe *policy.Error
	var ae *apiError
	switch {
	case errors.As(err, &pe):
		return &placedError{msg: policy.Format(file, pe)}
	case errors.As(err, &ae) && ae.Line > 0:
		// The coordinator's message may name the place itself.
		msg := strings.TrimPrefix(ae.Message, fmt.Sprintf("line %d, column %d: ", ae.Line, ae.Column))
		return &placedError{msg: fmt.Sprintf("%s:%d:%d: %s", file, ae.Line, ae.Column, msg)}
	}
	return &placedError{msg: fmt.Sprintf("%s: %v", file, err)}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func policyGetCommand() *command {
	return &command{
		name:    "get",
		summary: "print the current policy (or an older version) as saved, comments included",
		usage:   "policy get [--version N] [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			version := fs.Int("version", 0, "print saved version `N` instead of the current one")
			asJSON := fs.Bool("json", false, "print JSON (version, author, time and source)")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("policy get", args, 0, ""); err != nil {
					return err
				}
				if *version < 0 {
					return usagef("policy get: --version must be positive")
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				path := wire.PathPolicy
				if *version > 0 {
					path = wire.PathPolicyVersions + "/" + strconv.Itoa(*version)
				}
				var info wire.PolicyInfo
				err = c.do(ctx, http.MethodGet, path, nil, &info)
				none := "no policy saved yet: no traffic is allowed"
				if err != nil && *version == 0 && statusOf(err) == http.StatusNotFound {
					// Not a failure: the empty policy is a policy, and
					// an empty file saves it again.
					none, info, err = err.Error(), wire.PolicyInfo{}, nil
				}
				if err != nil {
					return fmt.Errorf("reading policy: %w", err)
				}
				if *asJSON {
					return writeJSON(e.stdout, info)
				}
				if info.Version == 0 && info.Source == "" {
					fmt.Fprintln(e.stderr, none)
					return nil
				}
				io.WriteString(e.stdout, info.Source)
				if !strings.HasSuffix(info.Source, "\n") {
					fmt.Fprintln(e.stdout)
				}
				return nil
			}
		},
	}
}

func policyVersionsCommand() *command {
	return &command{
		name:    "versions",
		summary: "list the saved versions of the policy, newest first",
		usage:   "policy versions [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("policy versions", args, 0, ""); err != nil {
					return err
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				versions := []wire.PolicyInfo{}
				if err := c.do(ctx, http.MethodGet, wire.PathPolicyVersions, nil, &versions); err != nil {
					return fmt.Errorf("listing policy versions: %w", err)
				}
				if *asJSON {
					return writeJSON(e.stdout, versions)
				}
				printPolicyVersions(e.stdout, versions, time.Now())
				return nil
			}
		},
	}
}

func printPolicyVersions(w io.Writer, versions []wire.PolicyInfo, now time.Time) {
	if len(versions) == 0 {
		fmt.Fprintln(w, "no policy saved yet: no traffic is allowed")
		return
	}
	slices.SortFunc(versions, func(a, b wire.PolicyInfo) int { return cmp.Compare(b.Version, a.Version) })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSAVED\tAUTHOR")
	for i, v := range versions {
		cur := ""
		if i == 0 {
			cur = "\t(current)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s%s\n", v.Version, relTime(v.Created, now), first(v.Author, "-"), cur)
	}
	tw.Flush()
}

func policySetCommand() *command {
	return &command{
		name:    "set",
		summary: "save a new policy: shows the pairs it opens and closes, then asks before applying",
		usage:   "policy set FILE [--yes] [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			yes := fs.Bool("yes", false, "apply without asking (for scripts)")
			asJSON := fs.Bool("json", false, "print the result as JSON (the changes then go to stderr)")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("policy set", args, 1, "policy FILE"); err != nil {
					return err
				}
				file := args[0]
				src, err := os.ReadFile(file)
				if err != nil {
					return fmt.Errorf("reading policy: %w", err)
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				return setPolicy(ctx, e, c, policyChange{
					place: file, source: string(src), yes: *yes, asJSON: *asJSON,
					save: func(ifVersion int) (wire.SetPolicyResponse, error) {
						var resp wire.SetPolicyResponse
						err := c.do(ctx, http.MethodPost, wire.PathPolicy, wire.SetPolicyRequest{Source: string(src), IfVersion: ifVersion}, &resp)
						return resp, err
					},
					saved: func(v int) string { return fmt.Sprintf("policy saved as version %d", v) },
				})
			}
		},
	}
}

func policyRestoreCommand() *command {
	return &command{
		name:    "restore",
		summary: "save an older version of the policy again, as a new version",
		usage:   "policy restore N [--yes] [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			yes := fs.Bool("yes", false, "apply without asking (for scripts)")
			asJSON := fs.Bool("json", false, "print the result as JSON (the changes then go to stderr)")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("policy restore", args, 1, "version N"); err != nil {
					return err
				}
				n, err := strconv.Atoi(args[0])
				if err != nil || n < 1 {
					return usagef("policy restore: invalid version %q: want a number from latch policy versions", args[0])
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				vpath := wire.PathPolicyVersions + "/" + strconv.Itoa(n)
				var old wire.PolicyInfo
				if err := c.do(ctx, http.MethodGet, vpath, nil, &old); err != nil {
					return fmt.Errorf("reading policy version %d: %w", n, err)
				}
				return setPolicy(ctx, e, c, policyChange{
					place: fmt.Sprintf("version %d", n), source: old.Source, yes: *yes, asJSON: *asJSON,
					// Restoring takes no version check: the dry run
					// shows what it changes from the policy of the
					// moment, which a concurrent save may overtake.
					save: func(int) (wire.SetPolicyResponse, error) {
						var resp wire.SetPolicyResponse
						err := c.do(ctx, http.MethodPost, vpath+"/restore", nil, &resp)
						return resp, err
					},
					saved: func(v int) string { return fmt.Sprintf("policy version %d restored as version %d", n, v) },
				})
			}
		},
	}
}

// policyChange is one save of a policy, checked first.
type policyChange struct {
	// place names the policy in errors: the file, or "version N".
	place  string
	source string
	yes    bool
	asJSON bool
	// save applies the policy; ifVersion is the version the dry run saw.
	save func(ifVersion int) (wire.SetPolicyResponse, error)
	// saved is what to say once saved as version v.
	saved func(v int) string
}

// setPolicy dry-runs ch's policy, shows the pairs it opens and closes,
// asks for confirmation on a terminal unless --yes, and saves it on
// condition that nobody saved another policy in between.
func setPolicy(ctx context.Context, e *env, c *adminClient, ch policyChange) error {
	// The version seen now guards the save against a concurrent one.
	var cur wire.PolicyInfo
	err := c.do(ctx, http.MethodGet, wire.PathPolicy, nil, &cur)
	switch statusOf(err) {
	case 0:
		if err != nil {
			return fmt.Errorf("reading the current policy: %w", err)
		}
	case http.StatusNotFound:
		cur = wire.PolicyInfo{} // none saved yet
	case http.StatusForbidden:
		cur = wire.PolicyInfo{}
		fmt.Fprintln(e.stderr, "note: this token may not read the policy (that needs nodes:read); a save made meanwhile by someone else is not detected")
	default:
		return fmt.Errorf("reading the current policy: %w", err)
	}
	var dry wire.SetPolicyResponse
	err = c.do(ctx, http.MethodPost, wire.PathPolicy, wire.SetPolicyRequest{Source: ch.source, DryRun: true}, &dry)
	if statusOf(err) == http.StatusBadRequest {
		return placePolicyError(ch.place, err)
	}
	if err != nil {
		return fmt.Errorf("checking policy: %w", err)
	}
	out := e.stdout
	if ch.asJSON {
		out = e.stderr
	}
	printPolicyChanges(out, dry)

	if !ch.yes {
		if e.stdinIsTerminal == nil || !e.stdinIsTerminal() {
			return errors.New("policy not applied: no terminal to confirm on; pass --yes to apply without asking")
		}
		ok, err := confirm(ctx, e, "Apply policy? [y/N] ")
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("policy not applied")
		}
	}

	resp, err := ch.save(cur.Version)
	if err != nil {
		switch statusOf(err) {
		case http.StatusConflict:
			return errors.New("policy changed since the check; run again")
		case http.StatusBadRequest:
			return placePolicyError(ch.place, err)
		}
		return fmt.Errorf("saving policy: %w", err)
	}
	if ch.asJSON {
		return writeJSON(e.stdout, resp)
	}
	fmt.Fprintln(e.stdout, ch.saved(resp.Version))
	return nil
}

// printPolicyChanges prints the pairs a policy opens (+) and closes (-).
func printPolicyChanges(w io.Writer, r wire.SetPolicyResponse) {
	if len(r.Gained) == 0 && len(r.Lost) == 0 {
		fmt.Fprintln(w, "no pairs gained or lost")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for _, p := range r.Gained {
		fmt.Fprintf(tw, "+ %s\t-> %s\t%s\n", p.Src, p.Dst, pairPorts(p))
	}
	for _, p := range r.Lost {
		fmt.Fprintf(tw, "- %s\t-> %s\t%s\n", p.Src, p.Dst, pairPorts(p))
	}
	tw.Flush()
	fmt.Fprintf(w, "%s gained, %d lost\n", plural(len(r.Gained), "pair"), len(r.Lost))
}

// pairPorts renders a pair's ports: "8080/tcp", "8000-8100/udp", "icmp".
func pairPorts(p wire.Pair) string {
	if p.Ports == "" {
		return p.Proto
	}
	return p.Ports + "/" + p.Proto
}

// confirm asks question on stderr and reads a yes or no from stdin; only
// "y" or "yes" is yes. An interrupt while waiting ends it with ctx.
func confirm(ctx context.Context, e *env, question string) (bool, error) {
	fmt.Fprint(e.stderr, question)
	in := e.stdin
	if in == nil {
		in = strings.NewReader("")
	}
	answer := make(chan string, 1)
	go func() {
		// Not waited for: a read of a terminal cannot be cancelled, and
		// the process ends soon after.
		line, _ := bufio.NewReader(in).ReadString('\n')
		answer <- line
	}()
	select {
	case line := <-answer:
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "y", "yes":
			return true, nil
		}
		return false, nil
	case <-ctx.Done():
		fmt.Fprintln(e.stderr)
		return false, ctx.Err()
	}
}
