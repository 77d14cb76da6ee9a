package main

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

func TestFlowsVerb(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	recs := []wire.FlowRecord{
		{FlowSummary: wire.FlowSummary{Direction: "in", Src: netip.MustParseAddr("100.64.0.2"), Dst: netip.MustParseAddr("100.64.0.1"),
			SrcNode: "n2", DstNode: "n1", Proto: wire.ProtoTCP, DstPort: 8080, Verdict: "accept", Reason: "accept-rule",
			Packets: 12, Bytes: 3 << 10, First: t0, Last: t0.Add(4 * time.Second)},
			Reporter: "n1", ReporterName: "api", SrcName: "web", DstName: "api", Received: t0.Add(5 * time.Second)},
		{FlowSummary: wire.FlowSummary{Direction: "in", Src: netip.MustParseAddr("100.64.9.9"), Dst: netip.MustParseAddr("100.64.0.1"),
			DstNode: "n1", Proto: wire.ProtoUDP, DstPort: 22, Verdict: "drop", Reason: "drop-no-rule", Packets: 3, Bytes: 90, First: t0, Last: t0},
			Reporter: "n1", ReporterName: "api", DstName: "api", Received: t0.Add(5 * time.Second)},
		{FlowSummary: wire.FlowSummary{Direction: "out", Src: netip.MustParseAddr("100.64.0.1"), Dst: netip.MustParseAddr("100.64.0.3"),
			SrcNode: "n1", DstNode: "n3", Proto: wire.ProtoICMP, Verdict: "accept", Reason: "accept-outbound", Packets: 1, Bytes: 84, First: t0, Last: t0},
			Reporter: "n1", ReporterName: "api", SrcName: "api", Received: t0.Add(5 * time.Second)},
		{FlowSummary: wire.FlowSummary{Direction: "in", Verdict: "drop", Reason: "overflow", Packets: 1000, Bytes: 1 << 20, First: t0, Last: t0},
			Reporter: "n1", Received: t0.Add(5 * time.Second)},
	}
	var (
		mu      sync.Mutex
		queries []string
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/flows", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		json.NewEncoder(w).Encode(recs)
	})
	vars := serveTLS(t, &fakeAdmin{}, mux)

	code, out, errOut := cli(t, vars, "flows", "--node", "web", "--verdict", "accept", "--since", "15m", "--limit", "50")
	if code != 0 {
		t.Fatalf("flows: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || strings.Join(strings.Fields(lines[0]), " ") != "TIME REPORTER DIR SRC DST VERDICT REASON PACKETS BYTES" {
		t.Fatalf("table:\n%s", out)
	}
	for i, want := range [][]string{
		{"api", "in", "web", "api:8080/tcp", "accept", "accept-rule", "12", "3.0", "KiB"},
		{"api", "in", "100.64.9.9", "api:22/udp", "drop", "drop-no-rule", "3", "90", "B"},
		{"api", "out", "api", "n3/icmp", "accept", "accept-outbound", "1", "84", "B"},
		{"n1", "in", "-", "(other", "flows)", "drop", "overflow", "1000", "1.0", "MiB"},
	} {
		got := strings.Fields(lines[i+1])[1:] // after the time
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("row %d: %q, want %q", i+1, got, want)
		}
	}
	mu.Lock()
	q := queries[0]
	mu.Unlock()
	for _, want := range []string{"node=web", "verdict=accept", "since=15m", "limit=50"} {
		if !strings.Contains(q, want) {
			t.Errorf("query %q lacks %q", q, want)
		}
	}

	code, out, _ = cli(t, vars, "flows", "--json")
	var got []wire.FlowRecord
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != 4 || got[0].SrcName != "web" || got[0].Bytes != 3<<10 {
		t.Errorf("flows --json: exit %d:\n%s", code, out)
	}

	for _, args := range [][]string{
		{"flows", "--verdict", "maybe"},
		{"flows", "--since", "yesterday"},
		{"flows", "--limit", "100000"},
		{"flows", "extra"},
	} {
		if code, _, errOut := cli(t, vars, args...); code != 2 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want 2 and one line", args, code, errOut)
		}
	}
	if code, out, _ := cli(t, vars, "flows", "--help"); code != 0 || !strings.Contains(out, "--verdict") {
		t.Errorf("flows --help: exit %d\n%s", code, out)
	}
}

func TestFlowsEmpty(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/flows", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("[]")) })
	vars := serveTLS(t, &fakeAdmin{}, mux)
	if code, out, _ := cli(t, vars, "flows"); code != 0 || out != "no flows\n" {
		t.Errorf("flows: exit %d, %q", code, out)
	}
}
