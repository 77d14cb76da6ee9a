// Command latch is the command line for people: agent verbs (up, down,
// status, ping, access request) talk to the local latchd over its unix
// socket; admin verbs (keys, tokens, nodes, policy, access list|approve|
// deny|revoke) talk to the coordinator's admin API over HTTPS; policy
// check needs neither.
//
// Exit status: 0 on success, 1 on failure, 2 on bad usage. Failures print
// one line to stderr: "latch: reason", or "FILE:LINE:COL: reason" for a
// policy refused at a place in its text.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"golang.org/x/sys/unix"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	e := &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, stdin: os.Stdin, stdinIsTerminal: stdinIsTerminal}
	code := run(ctx, e, os.Args[1:])
	stop()
	os.Exit(code)
}

// env is what a command may touch of the world.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// stdin answers confirmation prompts; nil reads as empty.
	stdin io.Reader
	// stdinIsTerminal reports whether a person can answer a prompt; nil
	// means no.
	stdinIsTerminal func() bool
}

// stdinIsTerminal reports whether the process's stdin is a terminal.
func stdinIsTerminal() bool {
	_, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS)
	return err == nil
}

// command is a verb, with sub-verbs or a run function.
type command struct {
	name    string
	summary string
	// usage is the synopsis after "latch ".
	usage string
	// flags defines the command's flags on fs; the returned function runs
	// it with the positional arguments.
	flags func(fs *flag.FlagSet, e *env) func(ctx context.Context, args []string) error
	sub   []*command
}

// usageError is bad usage: exit 2.
type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// placedError is a failure that names its own place, compiler style
// ("policy.hujson:12:5: unknown tag"): printed as is, exit 1.
type placedError struct{ msg string }

func (p *placedError) Error() string { return p.msg }

func commands() []*command {
	return []*command{
		upCommand(), downCommand(), statusCommand(), pingCommand(), rotateCommand(),
		{name: "access", summary: "request just-in-time access (agent); list, approve, deny and revoke requests (admin)", sub: []*command{
			accessRequestCommand(), accessListCommand(), accessApproveCommand(), accessDenyCommand(), accessRevokeCommand()}},
		{name: "policy", summary: "check a policy file; get, set and restore the access policy (admin)", sub: []*command{
			policyCheckCommand(), policyGetCommand(), policySetCommand(), policyVersionsCommand(), policyRestoreCommand()}},
		{name: "keys", summary: "manage enrollment keys (admin)", sub: []*command{keysCreateCommand(), keysListCommand(), keysRevokeCommand()}},
		{name: "tokens", summary: "manage admin API tokens (admin)", sub: []*command{tokensCreateCommand(), tokensListCommand(), tokensRevokeCommand()}},
		{name: "nodes", summary: "list, show, delete, revoke, quarantine, expire and tag nodes (admin)", sub: []*command{nodesListCommand(), nodesShowCommand(), nodesDeleteCommand(), nodesRevokeCommand(),
			nodesQuarantineCommand(), nodesUnquarantineCommand(), nodesExpireCommand(), nodesExpiryCommand(), nodesTagCommand()}},
		auditCommand(),
		flowsCommand(),
		trustCommand(),
	}
}

// run executes args and returns the exit status.
func run(ctx context.Context, e *env, args []string) int {
	err := dispatch(ctx, e, &command{name: "latch", sub: commands()}, nil, args)
	var ue *usageError
	var pe *placedError
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &pe):
		fmt.Fprintln(e.stderr, oneLine(pe.msg))
		return 1
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "latch: %s\n", oneLine(err.Error()))
		return 2
	default:
		fmt.Fprintf(e.stderr, "latch: %s\n", oneLine(err.Error()))
		return 1
	}
}

func dispatch(ctx context.Context, e *env, c *command, path []string, args []string) error {
	path = append(path, c.name)
	full := strings.Join(path, " ")
	// what names the command in errors, which run prefixes with "latch: ".
	what := strings.Join(path[1:], " ")
	if what != "" {
		what += ": "
	}
	if c.sub != nil {
		if len(args) == 0 {
			return usagef("%smissing command (see %s --help)", what, full)
		}
		switch args[0] {
		case "-h", "-help", "--help", "help":
			printGroupHelp(e.stdout, c, path)
			return flag.ErrHelp
		}
		for _, s := range c.sub {
			if s.name == args[0] {
				return dispatch(ctx, e, s, path, args[1:])
			}
		}
		if strings.HasPrefix(args[0], "-") {
			return usagef("%sunknown flag %s (see %s --help)", what, args[0], full)
		}
		return usagef("%sunknown command %q (see %s --help)", what, args[0], full)
	}

	fs := flag.NewFlagSet(full, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runFn := c.flags(fs, e)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printCommandHelp(e.stdout, c, fs)
		return err
	}
	if err != nil {
		return usagef("%s%v (see %s --help)", what, err, full)
	}
	return runFn(ctx, pos)
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments ("latch ping web-1 -c 3"). Everything after "--" is
// positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for i, a := range args {
		if a == "--" {
			rest = args[i+1:]
			args = args[:i]
			break
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return append(pos, rest...), nil
}

func printGroupHelp(w io.Writer, c *command, path []string) {
	fmt.Fprintf(w, "usage: %s <command> [flags]\n\n", strings.Join(path, " "))
	if len(path) == 1 {
		fmt.Fprintln(w, "Latch: a zero-trust overlay network.")
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "commands:")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, s := range c.sub {
		fmt.Fprintf(tw, "  %s\t%s\n", s.name, s.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun \"%s <command> --help\" for a command's flags.\n", strings.Join(path, " "))
}

func printCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: latch %s\n\n%s\n", c.usage, c.summary)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintln(w, "\nflags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// envOr returns the environment variable key, or def when it is unset.
func (e *env) envOr(key, def string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return def
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}

// wantArgs checks the number of positional arguments.
func wantArgs(name string, args []string, n int, what string) error {
	switch {
	case len(args) < n:
		return usagef("%s: missing %s", name, what)
	case len(args) > n:
		return usagef("%s: unexpected argument %q", name, args[n])
	}
	return nil
}
