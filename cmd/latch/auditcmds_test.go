package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// fakeAudit is the coordinator's audit API over n records.
type fakeAudit struct {
	n      int
	mu     sync.Mutex
	broken bool
	query  []string // raw queries of list calls
	// anchors are the anchor parameters of verify calls.
	anchors []string
}

func (f *fakeAudit) routes(mux *http.ServeMux) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	rec := func(seq int64) wire.AuditRecord {
		return wire.AuditRecord{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second), Actor: "token:0123456789ab user:alice@example.com",
			Action: "key.create", Target: fmt.Sprintf("key:k%d", seq), Summary: json.RawMessage(`{"reusable":true}`),
			PrevHash: fmt.Sprintf("h%d", seq-1), Hash: fmt.Sprintf("h%d", seq)}
	}
	mux.HandleFunc("GET /api/v1/audit", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.query = append(f.query, r.URL.RawQuery)
		f.mu.Unlock()
		q := r.URL.Query()
		limit := 100
		if v := q.Get("limit"); v != "" {
			limit, _ = strconv.Atoi(v)
		}
		out := []wire.AuditRecord{}
		if q.Has("after_seq") {
			after, _ := strconv.ParseInt(q.Get("after_seq"), 10, 64)
			for s := after + 1; s <= int64(f.n) && len(out) < limit; s++ {
				out = append(out, rec(s))
			}
		} else {
			for s := max(1, int64(f.n-limit+1)); s <= int64(f.n); s++ {
				out = append(out, rec(s))
			}
		}
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("GET /api/v1/audit/verify", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		broken := f.broken
		f.anchors = append(f.anchors, r.URL.Query().Get("anchor"))
		f.mu.Unlock()
		if broken {
			json.NewEncoder(w).Encode(wire.AuditVerifyResponse{Count: 41, Head: "h41", BrokenSeq: 42, Problem: "hash does not match the record's content: the record was edited"})
			return
		}
		json.NewEncoder(w).Encode(wire.AuditVerifyResponse{OK: true, Count: int64(f.n), Head: fmt.Sprintf("h%d", f.n), Anchor: fmt.Sprintf("%d:h%d", f.n, f.n)})
	})
}

func TestAuditVerbs(t *testing.T) {
	f := &fakeAudit{n: 2500}
	mux := http.NewServeMux()
	f.routes(mux)
	vars := serveTLS(t, &fakeAdmin{}, mux)

	code, out, errOut := cli(t, vars, "audit", "list", "--limit", "3", "--action", "key.create", "--actor", "alice", "--since", "1h")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "SEQ TIME ACTOR ACTION TARGET SUMMARY" {
		t.Fatalf("audit list: exit %d, stderr %q\n%s", code, errOut, out)
	}
	if got := strings.Fields(lines[1]); got[0] != "2498" || got[4] != "key.create" || got[5] != "key:k2498" || got[6] != `{"reusable":true}` {
		t.Errorf("first row %q", got)
	}
	if q := f.query[0]; !strings.Contains(q, "action=key.create") || !strings.Contains(q, "actor=alice") || !strings.Contains(q, "since=1h0m0s") || !strings.Contains(q, "limit=3") {
		t.Errorf("list query %q", q)
	}

	code, out, _ = cli(t, vars, "audit", "list", "--json", "--limit", "2")
	var recs []wire.AuditRecord
	if code != 0 || json.Unmarshal([]byte(out), &recs) != nil || len(recs) != 2 || recs[1].Seq != 2500 {
		t.Errorf("audit list --json: exit %d, %q", code, out)
	}

	// The export pages through all 2,500 records, one JSON object a line.
	f.mu.Lock()
	f.query = nil
	f.mu.Unlock()
	code, out, _ = cli(t, vars, "audit", "list", "--jsonl")
	lines = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 2500 {
		t.Fatalf("audit list --jsonl: exit %d, %d lines", code, len(lines))
	}
	for i, l := range lines {
		var r wire.AuditRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Seq != int64(i+1) {
			t.Fatalf("line %d: %v, %q", i+1, err, l)
		}
	}
	if len(f.query) != 3 || !strings.Contains(f.query[2], "after_seq=2000") {
		t.Errorf("export queries %q", f.query)
	}
	if code, out, _ = cli(t, vars, "audit", "list", "--jsonl", "--limit", "1500"); code != 0 || strings.Count(out, "\n") != 1500 {
		t.Errorf("audit list --jsonl --limit 1500: exit %d, %d lines", code, strings.Count(out, "\n"))
	}

	if code, out, _ = cli(t, vars, "audit", "verify"); code != 0 || out != "audit log OK: 2500 records, head h2500\nanchor: 2500:h2500 (keep it off the coordinator; pass it to --anchor to detect removed records)\n" {
		t.Errorf("audit verify: exit %d, %q", code, out)
	}
	// --anchor-file: no anchor the first time, then the stored head is
	// checked and replaced by the new one after a good run.
	anchorFile := filepath.Join(t.TempDir(), "audit-anchor")
	if code, _, errOut := cli(t, vars, "audit", "verify", "--anchor-file", anchorFile); code != 0 {
		t.Fatalf("audit verify --anchor-file: exit %d, %s", code, errOut)
	}
	f.mu.Lock()
	f.n = 2600
	f.mu.Unlock()
	if code, _, errOut := cli(t, vars, "audit", "verify", "--anchor-file", anchorFile); code != 0 {
		t.Fatalf("audit verify --anchor-file again: exit %d, %s", code, errOut)
	}
	if b, err := os.ReadFile(anchorFile); err != nil || string(b) != "2600:h2600\n" {
		t.Errorf("anchor file holds %q, %v", b, err)
	}
	cli(t, vars, "audit", "verify", "--anchor", "7:h7")
	f.mu.Lock()
	if got := f.anchors[len(f.anchors)-3:]; !slices.Equal(got, []string{"", "2500:h2500", "7:h7"}) {
		t.Errorf("anchors sent: %q", got)
	}
	f.broken = true
	f.mu.Unlock()
	if code, _, _ := cli(t, vars, "audit", "verify", "--anchor-file", anchorFile); code != 1 {
		t.Errorf("broken chain with --anchor-file: exit %d", code)
	}
	if b, _ := os.ReadFile(anchorFile); string(b) != "2600:h2600\n" {
		t.Errorf("a broken chain replaced the anchor: %q", b)
	}
	code, out, errOut = cli(t, vars, "audit", "verify")
	if code != 1 || out != "" || !strings.Contains(errOut, "audit log broken at record 42: hash does not match") || !strings.Contains(errOut, "41 records before it verify") {
		t.Errorf("audit verify of a broken chain: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	oneLineErr(t, errOut)
}

func TestAuditUsageErrors(t *testing.T) {
	admin := map[string]string{"LATCH_COORDINATOR": "https://127.0.0.1:1", "LATCH_TOKEN": "t"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "--since", "-1h"}, "--since must be positive"},
		{[]string{"list", "--limit", "5000"}, "--limit is at most 1000"},
		{[]string{"list", "--json", "--jsonl"}, "exclude each other"},
		{[]string{"verify", "x"}, `unexpected argument "x"`},
	} {
		code, out, errOut := cli(t, admin, append([]string{"audit"}, tt.args...)...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("latch audit %s: exit %d, stdout %q, stderr %q; want 2 and %q", strings.Join(tt.args, " "), code, out, errOut, tt.want)
		}
		oneLineErr(t, errOut)
	}
}
