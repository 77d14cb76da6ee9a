package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// fakePolicy is the coordinator's policy API.
type fakePolicy struct {
	mu       sync.Mutex
	versions []wire.PolicyInfo // oldest first
	// sets are the POST /api/v1/policy bodies, dry runs included.
	sets   []wire.SetPolicyRequest
	gained []wire.Pair
	lost   []wire.Pair
	// refuse, when set, answers every check and save with 400 and it.
	refuse *wire.PolicyError
	// raceAfterDryRun saves another policy right after each dry run, as
	// a second admin would.
	raceAfterDryRun bool
}

func (f *fakePolicy) saveLocked(src, author string) wire.PolicyInfo {
	v := wire.PolicyInfo{Version: len(f.versions) + 1, Created: time.Now().Add(-time.Minute), Author: author, Source: src}
	f.versions = append(f.versions, v)
	return v
}

func (f *fakePolicy) routes(mux *http.ServeMux) {
	answer := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /api/v1/policy", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.versions) == 0 {
			answer(w, http.StatusNotFound, wire.Error{Message: "no policy saved yet"})
			return
		}
		answer(w, http.StatusOK, f.versions[len(f.versions)-1])
	})
	mux.HandleFunc("POST /api/v1/policy", func(w http.ResponseWriter, r *http.Request) {
		var req wire.SetPolicyRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			answer(w, http.StatusBadRequest, wire.Error{Message: "malformed request"})
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.sets = append(f.sets, req)
		switch {
		case f.refuse != nil:
			answer(w, http.StatusBadRequest, f.refuse)
		case req.DryRun:
			answer(w, http.StatusOK, wire.SetPolicyResponse{Gained: f.gained, Lost: f.lost})
			if f.raceAfterDryRun {
				f.saveLocked("{}", "tok2 (bob@example.com)")
			}
		case req.IfVersion != 0 && req.IfVersion != len(f.versions):
			answer(w, http.StatusConflict, wire.Error{Message: "policy is at version " + strconv.Itoa(len(f.versions))})
		default:
			v := f.saveLocked(req.Source, "tok1 (alice@example.com)")
			answer(w, http.StatusOK, wire.SetPolicyResponse{Version: v.Version, Gained: f.gained, Lost: f.lost})
		}
	})
	mux.HandleFunc("GET /api/v1/policy/versions", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := []wire.PolicyInfo{}
		for _, v := range slices.Backward(f.versions) {
			v.Source = ""
			out = append(out, v)
		}
		answer(w, http.StatusOK, out)
	})
	version := func(w http.ResponseWriter, r *http.Request) (wire.PolicyInfo, bool) {
		n, err := strconv.Atoi(r.PathValue("v"))
		if err != nil || n < 1 || n > len(f.versions) {
			answer(w, http.StatusNotFound, wire.Error{Message: "no policy version " + r.PathValue("v")})
			return wire.PolicyInfo{}, false
		}
		return f.versions[n-1], true
	}
	mux.HandleFunc("GET /api/v1/policy/versions/{v}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if v, ok := version(w, r); ok {
			answer(w, http.StatusOK, v)
		}
	})
	mux.HandleFunc("POST /api/v1/policy/versions/{v}/restore", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if v, ok := version(w, r); ok {
			nv := f.saveLocked(v.Source, "tok1 (alice@example.com)")
			answer(w, http.StatusOK, wire.SetPolicyResponse{Version: nv.Version, Gained: f.gained, Lost: f.lost})
		}
	})
}

func servePolicy(t *testing.T, f *fakePolicy) (map[string]string, *fakeAdmin) {
	t.Helper()
	a := &fakeAdmin{}
	mux := http.NewServeMux()
	f.routes(mux)
	return serveTLS(t, a, mux), a
}

const policyV1 = `{
  // web talks to api
  "rules": [{"src": ["tag:web"], "dst": ["svc:api"]}],
}
`

func writePolicy(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.hujson")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	gainedPairs = []wire.Pair{{Src: "web", Dst: "api", Proto: "tcp", Ports: "8080"}, {Src: "ops-laptop", Dst: "db", Proto: "icmp"}}
	lostPairs   = []wire.Pair{{Src: "web", Dst: "db", Proto: "udp", Ports: "8000-8100"}}
	pairTable   = "+ web        -> api 8080/tcp\n" +
		"+ ops-laptop -> db  icmp\n" +
		"- web        -> db  8000-8100/udp\n" +
		"2 pairs gained, 1 lost\n"
)

func TestPolicySetShowsChangesAndSavesOnlyTheCheckedVersion(t *testing.T) {
	tests := []struct {
		name string
		args []string
		term *terminal
		// setup prepares the fake coordinator.
		setup    func(f *fakePolicy)
		wantCode int
		wantOut  string
		wantErr  string
		// wantSaved is the version saved, 0 for none.
		wantSaved     int
		wantIfVersion int
	}{
		{
			name: "--yes saves with the version seen at the check", args: []string{"--yes"},
			setup:    func(f *fakePolicy) { f.saveLocked("{}", "x") },
			wantCode: 0, wantOut: pairTable + "policy saved as version 2\n",
			wantSaved: 2, wantIfVersion: 1,
		},
		{
			name: "first policy", args: []string{"--yes"},
			wantCode: 0, wantOut: pairTable + "policy saved as version 1\n",
			wantSaved: 1, wantIfVersion: 0,
		},
		{
			name: "terminal, yes", term: &terminal{"y\n"},
			setup:    func(f *fakePolicy) { f.saveLocked("{}", "x") },
			wantCode: 0, wantOut: pairTable + "policy saved as version 2\n", wantErr: "Apply policy? [y/N] ",
			wantSaved: 2, wantIfVersion: 1,
		},
		{
			name: "terminal, YES without newline", term: &terminal{"YES"},
			wantCode: 0, wantOut: pairTable + "policy saved as version 1\n", wantErr: "Apply policy? [y/N] ",
			wantSaved: 1,
		},
		{
			name: "terminal, no", term: &terminal{"n\n"},
			wantCode: 1, wantOut: pairTable, wantErr: "Apply policy? [y/N] latch: policy not applied\n",
		},
		{
			name: "terminal, just enter", term: &terminal{"\n"},
			wantCode: 1, wantOut: pairTable, wantErr: "Apply policy? [y/N] latch: policy not applied\n",
		},
		{
			name:     "no terminal and no --yes",
			wantCode: 1, wantOut: pairTable,
			wantErr: "latch: policy not applied: no terminal to confirm on; pass --yes to apply without asking\n",
		},
		{
			name: "someone saved in between", args: []string{"--yes"},
			setup:    func(f *fakePolicy) { f.saveLocked("{}", "x"); f.raceAfterDryRun = true },
			wantCode: 1, wantOut: pairTable, wantErr: "latch: policy changed since the check; run again\n",
		},
		{
			name: "refused with a place", args: []string{"--yes"},
			setup: func(f *fakePolicy) {
				f.refuse = &wire.PolicyError{Message: `line 3, column 22: unknown tag "tag:wbe"`, Line: 3, Column: 22}
			},
			wantCode: 1, wantErr: "POLICY:3:22: unknown tag \"tag:wbe\"\n",
		},
		{
			name: "refused with a place the message does not repeat", args: []string{"--yes"},
			setup: func(f *fakePolicy) {
				f.refuse = &wire.PolicyError{Message: `"*" would widen access`, Line: 2, Column: 5}
			},
			wantCode: 1, wantErr: "POLICY:2:5: \"*\" would widen access\n",
		},
		{
			name: "refused by a failing test", args: []string{"--yes"},
			setup:    func(f *fakePolicy) { f.refuse = &wire.PolicyError{Message: `test 1: tag:web cannot reach svc:api`} },
			wantCode: 1, wantErr: "POLICY: test 1: tag:web cannot reach svc:api\n",
		},
		{
			name: "nothing changes", args: []string{"--yes"},
			setup:    func(f *fakePolicy) { f.gained, f.lost = nil, nil },
			wantCode: 0, wantOut: "no pairs gained or lost\npolicy saved as version 1\n",
			wantSaved: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakePolicy{gained: gainedPairs, lost: lostPairs}
			if tt.setup != nil {
				tt.setup(f)
			}
			before := len(f.versions)
			vars, _ := servePolicy(t, f)
			file := writePolicy(t, policyV1)
			code, out, errOut := cliStdin(t, vars, tt.term, append([]string{"policy", "set", file}, tt.args...)...)
			errOut = strings.ReplaceAll(errOut, file, "POLICY")
			if code != tt.wantCode || out != tt.wantOut || errOut != tt.wantErr {
				t.Errorf("exit %d, stdout\n%s\nstderr %q\nwant exit %d, stdout\n%s\nstderr %q", code, out, errOut, tt.wantCode, tt.wantOut, tt.wantErr)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.sets) == 0 || !f.sets[0].DryRun || f.sets[0].Source != policyV1 {
				t.Fatalf("first POST = %+v, want a dry run of the file", f.sets)
			}
			saves := 0
			for _, s := range f.sets[1:] {
				saves++
				if s.DryRun || s.Source != policyV1 || s.IfVersion != tt.wantIfVersion && tt.wantSaved != 0 {
					t.Errorf("save = %+v, want the file with if_version %d", s, tt.wantIfVersion)
				}
			}
			switch {
			case tt.wantSaved != 0 && (len(f.versions) != tt.wantSaved || f.versions[len(f.versions)-1].Source != policyV1):
				t.Errorf("%d versions, want version %d with the file", len(f.versions), tt.wantSaved)
			case tt.wantSaved == 0 && !f.raceAfterDryRun && len(f.versions) != before:
				t.Errorf("a policy was saved: %d versions, want %d", len(f.versions), before)
			}
			if tt.term != nil && !strings.HasPrefix(errOut, "Apply policy? [y/N] ") {
				t.Error("no prompt")
			}
			if (tt.term == nil && !slices.Contains(tt.args, "--yes")) && saves != 0 {
				t.Error("saved without confirmation")
			}
		})
	}
}

func TestPolicySetJSONPutsTheChangesOnStderr(t *testing.T) {
	f := &fakePolicy{gained: gainedPairs, lost: lostPairs}
	vars, _ := servePolicy(t, f)
	code, out, errOut := cli(t, vars, "policy", "set", writePolicy(t, policyV1), "--yes", "--json")
	var resp wire.SetPolicyResponse
	if code != 0 || json.Unmarshal([]byte(out), &resp) != nil || resp.Version != 1 || len(resp.Gained) != 2 || len(resp.Lost) != 1 {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	if errOut != pairTable {
		t.Errorf("stderr =\n%s\nwant\n%s", errOut, pairTable)
	}
}

func TestPolicyGetVersionsAndRestore(t *testing.T) {
	f := &fakePolicy{gained: gainedPairs, lost: lostPairs}
	f.saveLocked(policyV1, "tok1 (alice@example.com)")
	f.saveLocked("{} // no newline", "tok2 (bob@example.com)")
	vars, a := servePolicy(t, f)

	code, out, errOut := cli(t, vars, "policy", "get")
	if code != 0 || out != "{} // no newline\n" || errOut != "" {
		t.Errorf("policy get: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = cli(t, vars, "policy", "get", "--version", "1")
	if code != 0 || out != policyV1 {
		t.Errorf("policy get --version 1: exit %d, stdout %q, want the source as saved", code, out)
	}
	code, out, _ = cli(t, vars, "policy", "get", "--json")
	var info wire.PolicyInfo
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.Version != 2 || info.Author != "tok2 (bob@example.com)" || info.Source == "" {
		t.Errorf("policy get --json: exit %d, %q", code, out)
	}
	code, _, errOut = cli(t, vars, "policy", "get", "--version", "9")
	if code != 1 || errOut != "latch: reading policy: no policy version 9\n" {
		t.Errorf("policy get of a missing version: exit %d, stderr %q", code, errOut)
	}

	code, out, _ = cli(t, vars, "policy", "versions")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "VERSION") ||
		!strings.HasPrefix(lines[1], "2 ") || !strings.Contains(lines[1], "(current)") || !strings.Contains(lines[1], "bob@example.com") ||
		!strings.HasPrefix(lines[2], "1 ") || strings.Contains(lines[2], "(current)") || !strings.Contains(lines[2], "1m0s ago") {
		t.Errorf("policy versions: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, vars, "policy", "versions", "--json")
	var versions []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &versions) != nil || len(versions) != 2 || versions[0]["version"] != 2.0 || versions[0]["source"] != nil {
		t.Errorf("policy versions --json: exit %d, %q", code, out)
	}

	a.mu.Lock()
	a.requests = nil
	a.mu.Unlock()
	code, out, errOut = cli(t, vars, "policy", "restore", "1", "--yes")
	if code != 0 || out != pairTable+"policy version 1 restored as version 3\n" || errOut != "" {
		t.Errorf("policy restore: exit %d, stdout\n%s\nstderr %q", code, out, errOut)
	}
	f.mu.Lock()
	if len(f.versions) != 3 || f.versions[2].Source != policyV1 || len(f.sets) != 1 || !f.sets[0].DryRun || f.sets[0].Source != policyV1 {
		t.Errorf("after restore: versions %+v, POSTs %+v", f.versions, f.sets)
	}
	f.mu.Unlock()
	want := []string{"GET /api/v1/policy/versions/1", "GET /api/v1/policy", "POST /api/v1/policy", "POST /api/v1/policy/versions/1/restore"}
	if !slices.Equal(a.requests, want) {
		t.Errorf("restore requests = %q, want %q", a.requests, want)
	}
	code, _, errOut = cli(t, vars, "policy", "restore", "2")
	if code != 1 || !strings.Contains(errOut, "pass --yes") {
		t.Errorf("policy restore without --yes and terminal: exit %d, stderr %q", code, errOut)
	}
}

func TestPolicyGetWithoutAPolicyPrintsNothing(t *testing.T) {
	vars, _ := servePolicy(t, &fakePolicy{})
	code, out, errOut := cli(t, vars, "policy", "get")
	if code != 0 || out != "" || errOut != "no policy saved yet\n" {
		t.Errorf("404: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = cli(t, vars, "policy", "get", "--json")
	var info wire.PolicyInfo
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.Version != 0 {
		t.Errorf("404 --json: exit %d, stdout %q", code, out)
	}

	// A coordinator may answer version 0 rather than 404.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/policy", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(wire.PolicyInfo{}) })
	vars = serveTLS(t, &fakeAdmin{}, mux)
	code, out, errOut = cli(t, vars, "policy", "get")
	if code != 0 || out != "" || errOut != "no policy saved yet: no traffic is allowed\n" {
		t.Errorf("version 0: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestPolicyUsageErrors(t *testing.T) {
	admin := map[string]string{"LATCH_COORDINATOR": "https://127.0.0.1:1", "LATCH_TOKEN": "t"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "check"}, "missing policy FILE"},
		{[]string{"policy", "set"}, "missing policy FILE"},
		{[]string{"policy", "restore"}, "missing version N"},
		{[]string{"policy", "restore", "x"}, `invalid version "x"`},
		{[]string{"policy", "restore", "0"}, `invalid version "0"`},
		{[]string{"policy", "get", "--version", "-1"}, "--version must be positive"},
		{[]string{"policy", "get", "extra"}, `unexpected argument "extra"`},
	} {
		code, out, errOut := cli(t, admin, tt.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("latch %s: exit %d, stdout %q, stderr %q; want 2 and %q", strings.Join(tt.args, " "), code, out, errOut, tt.want)
		}
		oneLineErr(t, errOut)
	}
	code, _, errOut := cli(t, admin, "policy", "set", filepath.Join(t.TempDir(), "missing.hujson"), "--yes")
	if code != 1 || !strings.Contains(errOut, "reading policy:") {
		t.Errorf("policy set of a missing file: exit %d, stderr %q", code, errOut)
	}
	oneLineErr(t, errOut)
}

const goodPolicy = `{
  "groups": {"group:dba": ["alice@example.com"]},
  "tagOwners": {"tag:web": [], "tag:api": [], "tag:db": ["group:dba"]},
  "services": {
    "svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]},
    "svc:db":  {"tags": ["tag:db"], "ports": ["5432/tcp"]},
  },
  "rules": [
    {"src": ["tag:web"], "dst": ["svc:api"]},
    {"src": ["svc:api"], "dst": ["svc:db"]},
  ],
  "tests": [
    {"src": "tag:web", "accept": ["svc:api"], "deny": ["svc:db", "tag:db:22"]},
  ],
}
`

func TestPolicyCheckRunsLocally(t *testing.T) {
	tests := []struct {
		name     string
		text     string
		wantCode int
		wantOut  string
		// wantErr is a regular expression stderr must match whole.
		wantErr string
	}{
		{"good", goodPolicy, 0, "POLICY: ok (2 rules, 1 test passed)\n", ""},
		{"empty policy", "// nothing yet\n", 0, "POLICY: ok (0 rules, 0 tests passed)\n", ""},
		{"unknown tag", strings.Replace(goodPolicy, `"src": ["tag:web"], "dst"`, `"src": ["tag:wbe"], "dst"`, 1),
			1, "", `POLICY:9:15: unknown tag "tag:wbe".*\n`},
		{"wildcard", strings.Replace(goodPolicy, `"dst": ["svc:api"]}`, `"dst": ["*"]}`, 1),
			1, "", `POLICY:9:\d+: .*\*.*\n`},
		{"port out of range", strings.Replace(goodPolicy, `"8080/tcp"`, `"80800/tcp"`, 1),
			1, "", `POLICY:5:\d+: .*80800.*\n`},
		{"syntax", goodPolicy[:40], 1, "", `POLICY:\d+:\d+: .+\n`},
		{"failing test", strings.Replace(goodPolicy, `"accept": ["svc:api"], "deny": ["svc:db", "tag:db:22"]`, `"accept": ["svc:api", "svc:db"]`, 1),
			1, "", `POLICY:13:5: test 1 .*svc:db.*\n`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writePolicy(t, tt.text)
			// No coordinator: the environment points nowhere.
			code, out, errOut := cli(t, map[string]string{"LATCH_COORDINATOR": "https://127.0.0.1:1"}, "policy", "check", file)
			out = strings.ReplaceAll(out, file, "POLICY")
			errOut = strings.ReplaceAll(errOut, file, "POLICY")
			if code != tt.wantCode || out != tt.wantOut || !regexp.MustCompile("^"+tt.wantErr+"$").MatchString(errOut) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out, errOut, tt.wantCode, tt.wantOut, tt.wantErr)
			}
			if strings.Count(errOut, "\n") > 1 {
				t.Errorf("stderr is more than one line: %q", errOut)
			}
		})
	}
	code, _, errOut := cli(t, nil, "policy", "check", filepath.Join(t.TempDir(), "missing.hujson"))
	if code != 1 || !strings.HasPrefix(errOut, "latch: reading policy: ") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
	oneLineErr(t, errOut)
}
