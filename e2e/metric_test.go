package e2e

import (
	"fmt"
	"os"
	"testing"
)

// metric logs a measurement as "METRIC name=value [labels]" and, when
// $LATCH_METRICS_FILE is set (make test sets it), appends the line there,
// since go test shows no log of a passing test without -v.
func metric(t *testing.T, name string, value any, labels ...string) {
	t.Helper()
	line := fmt.Sprintf("METRIC %s=%v", name, value)
	for _, l := range labels {
		line += " " + l
	}
	t.Log(line)
	path := os.Getenv("LATCH_METRICS_FILE")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Logf("writing metric: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s test=%s\n", line, t.Name())
}
