package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
)

var (
	// bins are the Latch programs the tests run; see TestMain.
	bins cluster.Binaries
	// skipReason, when set, skips every test that needs namespaces.
	skipReason error
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	switch {
	case testing.Short():
		skipReason = fmt.Errorf("-short")
	case netns.Check() != nil:
		skipReason = netns.Check()
	}
	if skipReason != nil {
		return m.Run()
	}
	removed, err := netns.Sweep()
	for _, r := range removed {
		fmt.Fprintf(os.Stderr, "e2e: swept leftover %s\n", r)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: sweep: %v\n", err)
	}
	if dir := os.Getenv("LATCH_BIN_DIR"); dir != "" {
		bins = cluster.FindBinaries(dir)
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "latch-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	mod, err := cluster.ModuleDir(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	start := time.Now()
	bins = cluster.Build(ctx, mod, dir)
	fmt.Fprintf(os.Stderr, "e2e: built Latch binaries in %v\n", time.Since(start).Round(time.Millisecond))
	return m.Run()
}

// setup skips the test where namespaces are unavailable and fails it,
// saying why, when the Latch binaries did not build.
func setup(t *testing.T) cluster.Binaries {
	t.Helper()
	if skipReason != nil {
		t.Skipf("skipping: %v", skipReason)
	}
	if err := bins.Require(); err != nil {
		t.Fatalf("this test runs cmd/latch-coordinator, cmd/latchd and cmd/latch: %v", err)
	}
	return bins
}
