// Command latchd is the Latch agent: it owns the node's WireGuard
// interface and its connection to the coordinator, and serves the latch
// CLI on a unix socket.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/latchnet/latch/agent"
	"github.com/latchnet/latch/agent/localapi"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is latchd's main: 0 on a clean shutdown, 1 on failure, 2 on bad
// usage.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "latchd: %v\n", err)
		return 2
	}
	level, _ := cfg.level()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("latchd failed", "err", err)
		return 1
	}
	return 0
}

// serve runs the agent and its local API until ctx ends, then shuts both
// down: the interface and its UAPI socket are removed, the state is kept.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	rotation, err := cfg.keyRotation()
	if err != nil {
		return err
	}
	postureEvery, err := cfg.postureInterval()
	if err != nil {
		return err
	}
	flowEvery, err := cfg.flowInterval()
	if err != nil {
		return err
	}
	ag, err := agent.New(agent.Config{
		KeyRotation:     rotation,
		PostureInterval: postureEvery,
		FlowInterval:    flowEvery,
		Posture:         agent.NewSystemPosture(log),
		StateDir:        cfg.StateDir,
		MemoryState:     cfg.MemoryState(), // --state mem: nothing on disk
		Interface:       cfg.Interface,
		ListenPort:      cfg.Port,
		Logger:          log,
		NewEngine:       newEngine,
		OverlayMTU:      overlayMTU,
	})
	if err != nil {
		return err
	}
	ln, err := localapi.Listen(cfg.Socket)
	if err != nil {
		ag.Close()
		return err
	}
	srv := &http.Server{
		Handler:           localapi.NewHandler(ag, log),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	runErr := make(chan error, 1)
	go func() { runErr <- ag.Run(runCtx) }()
	stateDir := cfg.StateDir
	if cfg.MemoryState() {
		stateDir = "(memory only)"
	}
	log.Info("latchd started", "socket", cfg.Socket, "state_dir", stateDir, "interface", cfg.Interface, "port", cfg.Port)

	var failed error
	select {
	case err := <-runErr:
		failed = err
	case err := <-serveErr:
		failed = fmt.Errorf("local API: %w", err)
		cancelRun()
		if err := <-runErr; err != nil {
			log.Error("shutting down the agent", "err", err)
		}
	}
	log.Info("shutting down")
	// Requests still waiting (up, ping) end when the agent closes; give
	// them a moment to answer, then cut them.
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if failed != nil && !errors.Is(failed, http.ErrServerClosed) {
		return failed
	}
	return nil
}
