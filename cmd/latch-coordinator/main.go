// Command latch-coordinator runs the Latch control plane.
//
//	latch-coordinator serve [--config FILE] [--listen ADDR] [--data-dir DIR] [--db URL] ...
//
// Flags and the optional HuJSON config file (same option names) are parsed
// here into a coordinator.Config; flags override the file, which overrides
// the defaults. Errors are one line on stderr with a non-zero exit status:
// 2 for bad usage or configuration, 1 for failures while running.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/latchnet/latch/coordinator"
)

const usage = `Usage: latch-coordinator <command> [flags]

The Latch coordinator: node identities, enrollment keys, the access
policy and just-in-time grants, the network map and the admin API, served
over HTTPS (TLS 1.3) on one port.

Commands:
  serve    run the coordinator

Run "latch-coordinator serve --help" for the flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "serve":
		return serve(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "latch-coordinator: unknown command %q (run latch-coordinator --help)\n", args[0])
		return 2
	}
}

func serve(args []string, stdout, stderr io.Writer) int {
	opts, err := parseServe(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, serveUsage())
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "latch-coordinator serve: %s (run latch-coordinator serve --help)\n", oneLine(err))
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: opts.level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
	}()

	c, err := coordinator.New(ctx, opts.cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "latch-coordinator: %s\n", oneLine(err))
		return 1
	}
	err = c.Run(ctx)
	if cerr := c.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(stderr, "latch-coordinator: %s\n", oneLine(err))
		return 1
	}
	log.Info("stopped")
	return 0
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
