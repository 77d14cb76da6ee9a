package main

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

func TestAccessRequestGoesThroughTheAgent(t *testing.T) {
	f := &fakeAgent{}
	vars := serveAgent(t, f)

	code, out, errOut := cli(t, vars, "access", "request", "--to", "svc:db", "--port", "5432", "--for", "30m", "--reason", "INC-42")
	want := "access request ar1 is pending: svc:db port 5432 for 30m0s\nan approver decides with: latch access approve ar1 (or deny)\n"
	if code != 0 || out != want || errOut != "" {
		t.Errorf("pending: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	if w := (wire.NodeAccessRequest{To: "svc:db", Port: 5432, Duration: 30 * time.Minute, Reason: "INC-42"}); len(f.access) != 1 || f.access[0] != w {
		t.Errorf("agent got %+v, want %+v", f.access, w)
	}

	code, out, _ = cli(t, vars, "access", "request", "--to", "svc:staging", "--for", "1h", "--reason", "deploy")
	if code != 0 || !regexp.MustCompile(`^access request ar1 approved by policy: svc:staging until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in (59m5\ds|1h0m0s)\)\n$`).MatchString(out) {
		t.Errorf("auto-approved: exit %d, stdout %q", code, out)
	}

	code, out, _ = cli(t, vars, "access", "request", "--to", "svc:db", "--for", "30m", "--reason", "INC-42", "--json")
	var ar map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &ar) != nil || ar["id"] != "ar1" || ar["state"] != "pending" || ar["to"] != "svc:db" || ar["src_name"] != "web-1" {
		t.Errorf("--json: exit %d, %q", code, out)
	}

	code, out, errOut = cli(t, vars, "access", "request", "--to", "svc:denied", "--for", "30m", "--reason", "x")
	if code != 1 || out != "" || errOut != "latch: access request ar1 is denied: not during a freeze\n" {
		t.Errorf("denied: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = cli(t, vars, "access", "request", "--to", "svc:secret", "--for", "30m", "--reason", "x")
	if code != 1 || errOut != "latch: requesting access: no access rule lets web-1 request svc:secret\n" {
		t.Errorf("refused: exit %d, stderr %q", code, errOut)
	}
	if len(f.access) != 5 {
		t.Errorf("agent got %d requests, want 5", len(f.access))
	}
}

func TestAccessRequestWaitsForTheDecision(t *testing.T) {
	defer func(d time.Duration) { accessPollInterval = d }(accessPollInterval)
	accessPollInterval = time.Millisecond
	req := []string{"access", "request", "--to", "svc:db", "--port", "5432", "--for", "30m", "--reason", "INC-42", "--wait"}

	f := &fakeAgent{polls: []string{wire.AccessPending, wire.AccessPending, wire.AccessApproved}}
	code, out, errOut := cli(t, serveAgent(t, f), req...)
	if code != 0 || errOut != "" || f.npoll != 3 ||
		!regexp.MustCompile(`^access request ar1 is pending: svc:db port 5432 for 30m0s; waiting for an approver\naccess request ar1 approved by alice@example.com: svc:db port 5432 until .*\n$`).MatchString(out) {
		t.Errorf("approved: exit %d after %d polls, stdout %q, stderr %q", code, f.npoll, out, errOut)
	}

	f = &fakeAgent{polls: []string{wire.AccessDenied}}
	code, _, errOut = cli(t, serveAgent(t, f), req...)
	if code != 1 || errOut != "latch: access request ar1 is denied: use the read replica\n" {
		t.Errorf("denied: exit %d, stderr %q", code, errOut)
	}

	f = &fakeAgent{polls: []string{wire.AccessPending}}
	code, _, errOut = cli(t, serveAgent(t, f), append(req, "--wait-timeout", "50ms")...)
	if code != 1 || errOut != "latch: access request ar1 is still pending after 50ms; it stays open (latch access list)\n" {
		t.Errorf("timeout: exit %d, stderr %q", code, errOut)
	}
}

func TestAccessRequestUsageErrors(t *testing.T) {
	ok := []string{"--to", "svc:db", "--for", "30m", "--reason", "INC-42"}
	without := func(flag string) []string {
		i := slices.Index(ok, flag)
		return append(slices.Clone(ok[:i]), ok[i+2:]...)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{without("--to"), "--to is required"},
		{without("--for"), "--for is required"},
		{without("--reason"), "--reason is required"},
		{append(without("--to"), "--to", "db"), `invalid service "db": want svc:<name>`},
		{append(without("--to"), "--to", "tag:db"), `invalid service "tag:db"`},
		{append(ok, "--port", "70000"), "--port must be 1..65535"},
		{append(without("--for"), "--for", "-5m"), "--for must be positive"},
		{append(without("--for"), "--for", "30"), `invalid value "30" for flag -for`},
		{append(ok, "extra"), `unexpected argument "extra"`},
	} {
		code, out, errOut := cli(t, map[string]string{"LATCH_SOCKET": "/nonexistent"}, append([]string{"access", "request"}, tt.args...)...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("access request %s: exit %d, stdout %q, stderr %q; want 2 and %q", strings.Join(tt.args, " "), code, out, errOut, tt.want)
		}
		oneLineErr(t, errOut)
	}
}

// fakeAccess is the coordinator's access API.
type fakeAccess struct {
	mu        sync.Mutex
	reqs      []wire.AccessRequest
	decisions []string // "approve ar1: reason"
}

func (f *fakeAccess) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/access", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := []wire.AccessRequest{}
		for _, ar := range f.reqs {
			switch r.URL.Query().Get("state") {
			case "pending":
				if ar.State != wire.AccessPending {
					continue
				}
			case "active":
				if ar.State != wire.AccessApproved {
					continue
				}
			}
			out = append(out, ar)
		}
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("POST /api/v1/access/{id}/{verb}", func(w http.ResponseWriter, r *http.Request) {
		var d wire.DecideRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(wire.Error{Message: "malformed request"})
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		i := slices.IndexFunc(f.reqs, func(ar wire.AccessRequest) bool { return ar.ID == r.PathValue("id") })
		if i < 0 {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(wire.Error{Message: "no access request " + r.PathValue("id")})
			return
		}
		f.decisions = append(f.decisions, r.PathValue("verb")+" "+r.PathValue("id")+": "+d.Reason)
		ar := &f.reqs[i]
		now := time.Now()
		ar.Decided, ar.DecisionReason, ar.Approver = now, d.Reason, "alice@example.com"
		switch r.PathValue("verb") {
		case "approve":
			ar.State, ar.Expires = wire.AccessApproved, now.Add(ar.Duration)
		case "deny":
			ar.State = wire.AccessDenied
		case "revoke":
			ar.State = wire.AccessRevoked
		default:
			w.WriteHeader(http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(ar)
	})
}

func TestAccessAdminVerbs(t *testing.T) {
	now := time.Now()
	f := &fakeAccess{reqs: []wire.AccessRequest{
		{ID: "ar1", Src: "n4", SrcName: "ci-1", To: "svc:db", Port: 5432, Duration: 30 * time.Minute, Reason: "INC-42", State: wire.AccessPending, Created: now.Add(-2 * time.Minute)},
		{ID: "ar2", Src: "n4", SrcName: "ci-1", To: "svc:staging", Duration: time.Hour, Reason: "deploy", State: wire.AccessApproved, Approver: "policy",
			Created: now.Add(-30 * time.Minute), Expires: now.Add(29*time.Minute + 30*time.Second + 200*time.Millisecond)},
		{ID: "ar3", Src: "n5", SrcName: "web-1", To: "svc:db", Duration: time.Minute, Reason: "old", State: wire.AccessApproved, Approver: "bob@example.com",
			Created: now.Add(-time.Hour), Expires: now.Add(-59 * time.Minute)},
	}}
	mux := http.NewServeMux()
	f.routes(mux)
	a := &fakeAdmin{}
	vars := serveTLS(t, a, mux)

	code, out, _ := cli(t, vars, "access", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	fields := func(i int) []string { return strings.Fields(lines[i]) }
	if code != 0 || len(lines) != 4 {
		t.Fatalf("access list: exit %d\n%s", code, out)
	}
	if got := fields(0); !slices.Equal(got, []string{"ID", "STATE", "FROM", "TO", "PORT", "FOR", "REMAINING", "REQUESTED", "APPROVER", "REASON"}) {
		t.Errorf("header = %q", got)
	}
	if got := fields(1); !slices.Equal(got, []string{"ar1", "pending", "ci-1", "svc:db", "5432", "30m0s", "-", "2m0s", "ago", "-", "INC-42"}) {
		t.Errorf("pending row = %q", got)
	}
	// An active session shows the time it has left.
	if got := fields(2); len(got) < 7 || got[1] != "approved" || got[4] != "all" || !regexp.MustCompile(`^29m[23]\ds$`).MatchString(got[6]) {
		t.Errorf("active row = %q", got)
	}
	// A session past its expiry reads expired even if the coordinator
	// has not said so yet.
	if got := fields(3); len(got) < 7 || got[1] != "expired" || got[6] != "-" {
		t.Errorf("expired row = %q", got)
	}

	code, out, _ = cli(t, vars, "access", "list", "--state", "pending", "--json")
	var reqs []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &reqs) != nil || len(reqs) != 1 || reqs[0]["id"] != "ar1" || reqs[0]["src_name"] != "ci-1" || reqs[0]["state"] != "pending" {
		t.Errorf("access list --state pending --json: exit %d, %q", code, out)
	}
	code, out, _ = cli(t, vars, "access", "list", "--state", "active")
	if code != 0 || strings.Contains(out, "ar1") || !strings.Contains(out, "ar2") {
		t.Errorf("access list --state active: exit %d\n%s", code, out)
	}

	code, out, errOut := cli(t, vars, "access", "approve", "ar1", "--reason", "looks fine")
	if code != 0 || !regexp.MustCompile(`^approved access request ar1: ci-1 -> svc:db port 5432 until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in 30m0s\)\n$`).MatchString(out) || errOut != "" {
		t.Errorf("access approve: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = cli(t, vars, "access", "revoke", "ar2", "--json")
	var ar wire.AccessRequest
	if code != 0 || json.Unmarshal([]byte(out), &ar) != nil || ar.ID != "ar2" || ar.State != wire.AccessRevoked {
		t.Errorf("access revoke --json: exit %d, %q", code, out)
	}
	code, out, _ = cli(t, vars, "access", "deny", "ar3")
	if code != 0 || out != "denied access request ar3: web-1 -> svc:db\n" {
		t.Errorf("access deny: exit %d, %q", code, out)
	}
	code, _, errOut = cli(t, vars, "access", "approve", "ar9")
	if code != 1 || errOut != "latch: approving access request ar9: no access request ar9\n" {
		t.Errorf("approving a missing request: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = cli(t, vars, "access", "list", "--state", "expired")
	if code != 2 || !strings.Contains(errOut, `invalid --state "expired"`) {
		t.Errorf("bad --state: exit %d, stderr %q", code, errOut)
	}

	if want := []string{"approve ar1: looks fine", "revoke ar2: ", "deny ar3: "}; !slices.Equal(f.decisions, want) {
		t.Errorf("decisions = %q, want %q", f.decisions, want)
	}
	want := []string{"GET /api/v1/access?state=all", "GET /api/v1/access?state=pending", "GET /api/v1/access?state=active",
		"POST /api/v1/access/ar1/approve", "POST /api/v1/access/ar2/revoke", "POST /api/v1/access/ar3/deny", "POST /api/v1/access/ar9/approve"}
	if !slices.Equal(a.requests, want) {
		t.Errorf("requests =\n%s\nwant\n%s", strings.Join(a.requests, "\n"), strings.Join(want, "\n"))
	}
}

func TestAccessListEmpty(t *testing.T) {
	f := &fakeAccess{}
	mux := http.NewServeMux()
	f.routes(mux)
	vars := serveTLS(t, &fakeAdmin{}, mux)
	for state, want := range map[string]string{"all": "no access requests\n", "pending": "no pending access requests\n"} {
		if code, out, _ := cli(t, vars, "access", "list", "--state", state); code != 0 || out != want {
			t.Errorf("--state %s: exit %d, %q; want %q", state, code, out, want)
		}
	}
}
