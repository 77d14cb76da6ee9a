package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/wire"
)

// cli runs latch with args and environment vars, returning exit code and
// outputs.
func cli(t *testing.T, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	return cliStdin(t, vars, nil, args...)
}

// terminal is what a person types at a terminal.
type terminal struct{ input string }

// cliStdin is cli with stdin a terminal where term types its input, or
// not a terminal (and empty) when term is nil.
func cliStdin(t *testing.T, vars map[string]string, term *terminal, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env{stdout: &out, stderr: &errOut, getenv: func(k string) string { return vars[k] }}
	if term != nil {
		e.stdin = strings.NewReader(term.input)
		e.stdinIsTerminal = func() bool { return true }
	}
	code := run(context.Background(), e, args)
	return code, out.String(), errOut.String()
}

func oneLineErr(t *testing.T, stderr string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "latch: ") {
		t.Errorf("stderr is not one line starting with \"latch: \": %q", stderr)
	}
}

func TestUsageErrorsExit2WithOneLine(t *testing.T) {
	admin := map[string]string{"LATCH_COORDINATOR": "https://127.0.0.1:1", "LATCH_TOKEN": "t"}
	tests := []struct {
		args []string
		vars map[string]string
		want string
	}{
		{[]string{"bogus"}, nil, `unknown command "bogus"`},
		{[]string{"--bogus"}, nil, "unknown flag --bogus"},
		{[]string{"status", "--bogus"}, nil, "latch: status: flag provided but not defined: -bogus (see latch status --help)"},
		{[]string{"status", "extra"}, nil, `unexpected argument "extra"`},
		{[]string{"keys", "frob"}, nil, `latch: keys: unknown command "frob" (see latch keys --help)`},
		{[]string{"ping"}, nil, "missing PEER"},
		{[]string{"ping", "a", "b"}, nil, `unexpected argument "b"`},
		{[]string{"ping", "a", "-c", "0"}, nil, "-c must be at least 1"},
		{[]string{"up", "--tags", "web"}, nil, `invalid tag "web"`},
		{[]string{"up", "--auth-key", "latchkey_bad_secretvalue_x"}, nil, "malformed enrollment key"},
		{[]string{"keys", "list"}, nil, "no coordinator"},
		{[]string{"keys", "list", "--coordinator", "https://c"}, nil, "no admin token"},
		{[]string{"keys", "list", "--coordinator", "http://c", "--token", "t"}, nil, "want https://"},
		{[]string{"keys", "create", "--expiry", "soon"}, admin, "invalid value \"soon\" for flag -expiry"},
		{[]string{"keys", "revoke"}, admin, "missing key ID"},
		{[]string{"nodes", "show"}, admin, "missing node ID or name"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := cli(t, tt.vars, tt.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			oneLineErr(t, errOut)
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr %q lacks %q", errOut, tt.want)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
			if strings.Contains(errOut, "secretvalue") {
				t.Error("the error echoes the enrollment key")
			}
		})
	}
}

func TestMissingCommandIsAUsageError(t *testing.T) {
	for args, want := range map[string]string{
		"":      "latch: missing command (see latch --help)\n",
		"keys":  "latch: keys: missing command (see latch keys --help)\n",
		"nodes": "latch: nodes: missing command (see latch nodes --help)\n",
	} {
		code, out, errOut := cli(t, nil, strings.Fields(args)...)
		if code != 2 || out != "" || errOut != want {
			t.Errorf("latch %s: exit %d, stdout %q, stderr %q; want 2, %q", args, code, out, errOut, want)
		}
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	var paths [][]string
	for _, c := range commands() {
		if c.sub == nil {
			paths = append(paths, []string{c.name})
			continue
		}
		paths = append(paths, []string{c.name})
		for _, s := range c.sub {
			paths = append(paths, []string{c.name, s.name})
		}
	}
	paths = append(paths, nil)
	for _, p := range paths {
		for _, h := range []string{"--help", "-h"} {
			args := append(append([]string{}, p...), h)
			code, out, errOut := cli(t, nil, args...)
			if code != 0 || !strings.HasPrefix(out, "usage: latch") || errOut != "" {
				t.Errorf("latch %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
			}
		}
	}
}

// fakeAgent is a Backend behind a real local API socket.
type fakeAgent struct {
	mu      sync.Mutex
	up      localapi.UpRequest
	downs   int
	replies []localapi.PingReply
	access  []wire.NodeAccessRequest
	// polls are the states AccessRequest returns, one per call; the last
	// one repeats.
	polls []string
	npoll int
}

func (f *fakeAgent) Up(ctx context.Context, req localapi.UpRequest) (localapi.UpResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.up = req
	if req.Coordinator == "https://down" {
		return localapi.UpResponse{}, errors.New("timed out after 30s waiting for a netmap from the coordinator")
	}
	return localapi.UpResponse{NodeID: "n7", Name: "web-1", Enrolled: req.AuthKey != "",
		Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.7/32"), netip.MustParsePrefix("fd7a:1:2::7/128")}}, nil
}

func (f *fakeAgent) Down(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.downs++
	return nil
}

func (f *fakeAgent) Status(ctx context.Context) (localapi.Status, error) {
	return localapi.Status{
		State:       localapi.StateConnected,
		Coordinator: "https://198.18.0.1:8443",
		Self:        &localapi.Node{ID: "n7", Name: "web-1", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.7/32")}},
		Interface:   "latch0",
		Peers: []localapi.Peer{{
			Node:          localapi.Node{ID: "n8", Name: "db-1", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.8/32")}},
			Endpoint:      netip.MustParseAddrPort("198.18.0.8:51820"),
			LastHandshake: time.Now().Add(-5 * time.Second),
			RxBytes:       2048, TxBytes: 10,
			Rules: []string{"r-0a1b2c3d4e/0", "grant-ar1"},
		}, {
			Node: localapi.Node{ID: "n9", Name: "api-1", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.9/32")}},
		}},
		NetmapVersion: 12,
		Rules:         []wire.FilterRule{{ID: "r-0a1b2c3d4e/0"}, {ID: "grant-ar1", Expires: time.Now().Add(29*time.Minute + 30*time.Second)}},
	}, nil
}

func (f *fakeAgent) RequestAccess(ctx context.Context, req wire.NodeAccessRequest) (wire.AccessRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.access = append(f.access, req)
	ar := wire.AccessRequest{ID: "ar1", Src: "n7", SrcName: "web-1", To: req.To, Port: req.Port, Duration: req.Duration, Reason: req.Reason,
		State: wire.AccessPending, Created: time.Now()}
	switch req.To {
	case "svc:staging":
		ar.State, ar.Approver, ar.Expires = wire.AccessApproved, "policy", time.Now().Add(req.Duration)
	case "svc:denied":
		ar.State, ar.DecisionReason = wire.AccessDenied, "not during a freeze"
	case "svc:secret":
		return wire.AccessRequest{}, localapi.Errorf(http.StatusForbidden, "requesting access: no access rule lets web-1 request svc:secret")
	}
	return ar, nil
}

func (f *fakeAgent) AccessRequest(ctx context.Context, id string) (wire.AccessRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != "ar1" || len(f.polls) == 0 {
		return wire.AccessRequest{}, localapi.Errorf(http.StatusNotFound, "reading access request: access request %q not found", id)
	}
	st := f.polls[min(f.npoll, len(f.polls)-1)]
	f.npoll++
	ar := wire.AccessRequest{ID: "ar1", Src: "n7", SrcName: "web-1", To: "svc:db", Port: 5432, Duration: 30 * time.Minute, State: st}
	switch st {
	case wire.AccessApproved:
		ar.Approver, ar.Expires = "alice@example.com", time.Now().Add(30*time.Minute)
	case wire.AccessDenied:
		ar.Approver, ar.DecisionReason = "alice@example.com", "use the read replica"
	}
	return ar, nil
}

func (f *fakeAgent) Ping(ctx context.Context, req localapi.PingRequest, emit func(localapi.PingEvent)) error {
	if req.Peer != "db-1" {
		return localapi.Errorf(http.StatusNotFound, "no peer named or addressed %q", req.Peer)
	}
	emit(localapi.PingEvent{Target: &localapi.PingTarget{Name: "db-1", Address: netip.MustParseAddr("100.64.0.8")}})
	f.mu.Lock()
	replies := f.replies
	f.mu.Unlock()
	for i := 0; i < req.Count; i++ {
		emit(localapi.PingEvent{Reply: &replies[i%len(replies)]})
	}
	return nil
}

func serveAgent(t *testing.T, f *fakeAgent) map[string]string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "latchd.sock")
	ln, err := localapi.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: localapi.NewHandler(f, nil)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return map[string]string{"LATCH_SOCKET": sock}
}

func TestAgentVerbs(t *testing.T) {
	f := &fakeAgent{replies: []localapi.PingReply{{Seq: 1, RTT: 1500 * time.Microsecond}, {Seq: 2, Error: "timeout"}}}
	vars := serveAgent(t, f)

	code, out, errOut := cli(t, vars, "up", "--coordinator", "https://c:8443", "--auth-key", "latchkey_0123456789ab_"+strings.Repeat("A", 43)+"_"+strings.Repeat("B", 43), "--tags", "tag:web,tag:ci", "--ephemeral")
	if code != 0 || out != "enrolled as node n7\nlatch is up: web-1 100.64.0.7 fd7a:1:2::7\n" || errOut != "" {
		t.Errorf("up: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if f.up.Coordinator != "https://c:8443" || len(f.up.Tags) != 2 || !f.up.Ephemeral || f.up.Timeout != 30*time.Second {
		t.Errorf("agent got %+v", f.up)
	}

	code, out, _ = cli(t, vars, "up", "--json")
	var upResp map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &upResp) != nil || upResp["name"] != "web-1" || upResp["node_id"] != "n7" {
		t.Errorf("up --json: exit %d, %q", code, out)
	}

	code, _, errOut = cli(t, vars, "up", "--coordinator", "https://down")
	if code != 1 || !strings.Contains(errOut, "timed out") {
		t.Errorf("failing up: exit %d, stderr %q", code, errOut)
	}
	oneLineErr(t, errOut)

	code, out, _ = cli(t, vars, "status")
	for _, want := range []string{"state:", "connected", "web-1 100.64.0.7 (id n7)", "PEER", "db-1", "198.18.0.8:51820", "5s ago", "2.0 KiB", "10 B",
		"inbound rules:  2", "grant-ar1 expires in 29m", "IN", "r-0a1b2c3d4e/0,grant-ar1"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Errorf("status exit %d", code)
	}

	code, out, _ = cli(t, vars, "status", "--json")
	var st struct {
		State string `json:"state"`
		Self  struct {
			Name string `json:"name"`
		} `json:"self"`
		Peers []struct {
			Name     string   `json:"name"`
			Endpoint string   `json:"endpoint"`
			RxBytes  int64    `json:"rx_bytes"`
			Rules    []string `json:"rules"`
		} `json:"peers"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.State != "connected" || st.Self.Name != "web-1" ||
		len(st.Peers) != 2 || st.Peers[0].Endpoint != "198.18.0.8:51820" || st.Peers[0].RxBytes != 2048 || len(st.Peers[0].Rules) != 2 || len(st.Peers[1].Rules) != 0 {
		t.Errorf("status --json: exit %d, %q", code, out)
	}

	// Flags may follow the peer, as with ping(8).
	code, out, _ = cli(t, vars, "ping", "db-1", "-c", "2")
	want := "PING db-1 (100.64.0.8)\n" +
		"reply from 100.64.0.8: icmp_seq=1 time=1.500 ms\n" +
		"no reply from 100.64.0.8: icmp_seq=2 (timeout)\n" +
		"\n--- db-1 ping statistics ---\n" +
		"2 packets transmitted, 1 received, 50% packet loss\n" +
		"rtt min/avg/max = 1.500 ms/1.500 ms/1.500 ms\n"
	if code != 0 || out != want {
		t.Errorf("ping: exit %d, output\n%s\nwant\n%s", code, out, want)
	}

	f.mu.Lock()
	f.replies = []localapi.PingReply{{Seq: 1, Error: "timeout"}}
	f.mu.Unlock()
	code, _, errOut = cli(t, vars, "ping", "-c", "1", "db-1")
	if code != 1 || errOut != "latch: no reply from db-1\n" {
		t.Errorf("ping without replies: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = cli(t, vars, "ping", "nobody")
	if code != 1 || errOut != "latch: no peer named or addressed \"nobody\"\n" {
		t.Errorf("ping of unknown peer: exit %d, stderr %q", code, errOut)
	}

	code, out, _ = cli(t, vars, "down")
	if code != 0 || !strings.Contains(out, "latch is down") || f.downs != 1 {
		t.Errorf("down: exit %d, %q, downs %d", code, out, f.downs)
	}
}

func TestAgentVerbWithoutAgentFailsOnOneLine(t *testing.T) {
	code, _, errOut := cli(t, map[string]string{"LATCH_SOCKET": filepath.Join(t.TempDir(), "none.sock")}, "status")
	if code != 1 || !strings.Contains(errOut, "cannot reach latchd") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	oneLineErr(t, errOut)
}

// fakeAdmin is the coordinator's admin API.
type fakeAdmin struct {
	mu       sync.Mutex
	requests []string
	create   wire.CreateKeyRequest
}

func serveAdmin(t *testing.T, a *fakeAdmin) map[string]string {
	t.Helper()
	now := time.Now()
	key := wire.KeyInfo{ID: "k1", Description: "ci", Reusable: true, Tags: []wire.Tag{"tag:ci"}, Created: now, Expires: now.Add(24 * time.Hour), Uses: 3}
	node := wire.NodeInfo{Node: wire.Node{ID: "n7", Name: "web-1", Key: wire.NodePublic{1, 2, 3}, Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.7/32")}, Created: now}, Hostname: "web-1", Online: true}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/keys", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		json.NewDecoder(r.Body).Decode(&a.create)
		a.mu.Unlock()
		json.NewEncoder(w).Encode(wire.CreateKeyResponse{Key: "latchkey_the_full_key", Info: key})
	})
	mux.HandleFunc("GET /api/v1/keys", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode([]wire.KeyInfo{key}) })
	mux.HandleFunc("DELETE /api/v1/keys/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /api/v1/nodes", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode([]wire.NodeInfo{node}) })
	mux.HandleFunc("GET /api/v1/nodes/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "web-1" && r.PathValue("id") != "n7" {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(wire.Error{Message: "node not found"})
			return
		}
		json.NewEncoder(w).Encode(node)
	})
	mux.HandleFunc("DELETE /api/v1/nodes/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	return serveTLS(t, a, mux)
}

// testToken is the admin token the fake coordinator accepts.
const testToken = "latchtok_0123456789ab_secret"

// serveTLS serves mux as the coordinator's admin API over HTTPS, logging
// every request in a and refusing other tokens than testToken. It returns
// the environment that points latch at it.
func serveTLS(t *testing.T, a *fakeAdmin, mux *http.ServeMux) map[string]string {
	t.Helper()
	const token = testToken
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		if r.URL.RawQuery != "" {
			a.requests = append(a.requests, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		} else {
			a.requests = append(a.requests, r.Method+" "+r.URL.Path)
		}
		a.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(wire.Error{Message: "invalid token"})
			return
		}
		mux.ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	return map[string]string{"LATCH_COORDINATOR": srv.URL, "LATCH_TOKEN": token, "LATCH_CA_FILE": caFile}
}

func TestAdminVerbs(t *testing.T) {
	a := &fakeAdmin{}
	vars := serveAdmin(t, a)

	code, out, errOut := cli(t, vars, "keys", "create", "--reusable", "--tags", "tag:ci", "--expiry", "2h", "--description", "ci")
	if code != 0 || out != "latchkey_the_full_key\n" || !strings.Contains(errOut, "will not be shown again") {
		t.Errorf("keys create: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if !a.create.Reusable || a.create.Expiry != 2*time.Hour || len(a.create.Tags) != 1 || a.create.Description != "ci" {
		t.Errorf("create request = %+v", a.create)
	}
	code, out, _ = cli(t, vars, "keys", "create", "--json")
	var created wire.CreateKeyResponse
	if code != 0 || json.Unmarshal([]byte(out), &created) != nil || created.Key != "latchkey_the_full_key" || created.Info.ID != "k1" {
		t.Errorf("keys create --json: exit %d, %q", code, out)
	}

	code, out, _ = cli(t, vars, "keys", "list")
	if code != 0 || !strings.Contains(out, "ID") || !strings.Contains(out, "k1") || !strings.Contains(out, "active") || !strings.Contains(out, "tag:ci") {
		t.Errorf("keys list: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, vars, "keys", "list", "--json")
	var keys []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &keys) != nil || len(keys) != 1 || keys[0]["id"] != "k1" {
		t.Errorf("keys list --json: exit %d, %q", code, out)
	}
	if code, out, _ = cli(t, vars, "keys", "revoke", "k1"); code != 0 || out != "revoked enrollment key k1\n" {
		t.Errorf("keys revoke: exit %d, %q", code, out)
	}

	code, out, _ = cli(t, vars, "nodes", "list")
	if code != 0 || !strings.Contains(out, "web-1") || !strings.Contains(out, "100.64.0.7") || !strings.Contains(out, "LAST SEEN") {
		t.Errorf("nodes list: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, vars, "nodes", "list", "--json")
	var nodes []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &nodes) != nil || len(nodes) != 1 || nodes[0]["name"] != "web-1" || nodes[0]["online"] != true {
		t.Errorf("nodes list --json: exit %d, %q", code, out)
	}
	code, out, _ = cli(t, vars, "nodes", "show", "web-1", "--json")
	var node map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &node) != nil || node["id"] != "n7" {
		t.Errorf("nodes show --json: exit %d, %q", code, out)
	}
	if code, out, _ = cli(t, vars, "nodes", "show", "n7"); code != 0 || !strings.Contains(out, "hostname:") {
		t.Errorf("nodes show: exit %d\n%s", code, out)
	}
	code, _, errOut = cli(t, vars, "nodes", "show", "ghost")
	if code != 1 || errOut != "latch: showing node: node not found\n" {
		t.Errorf("nodes show of a missing node: exit %d, stderr %q", code, errOut)
	}
	if code, out, _ = cli(t, vars, "nodes", "delete", "web-1"); code != 0 || out != "deleted node web-1\n" {
		t.Errorf("nodes delete: exit %d, %q", code, out)
	}

	want := []string{"POST /api/v1/keys", "POST /api/v1/keys", "GET /api/v1/keys", "GET /api/v1/keys", "DELETE /api/v1/keys/k1",
		"GET /api/v1/nodes", "GET /api/v1/nodes", "GET /api/v1/nodes/web-1", "GET /api/v1/nodes/n7", "GET /api/v1/nodes/ghost", "DELETE /api/v1/nodes/web-1"}
	if strings.Join(a.requests, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests =\n%s\nwant\n%s", strings.Join(a.requests, "\n"), strings.Join(want, "\n"))
	}
}

func TestAdminTokenSourcesAndFailures(t *testing.T) {
	vars := serveAdmin(t, &fakeAdmin{})
	token := vars["LATCH_TOKEN"]
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)

	withToken := func(k, v string) map[string]string {
		m := map[string]string{"LATCH_COORDINATOR": vars["LATCH_COORDINATOR"], "LATCH_CA_FILE": vars["LATCH_CA_FILE"]}
		if k != "" {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name     string
		vars     map[string]string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"LATCH_TOKEN_FILE", withToken("LATCH_TOKEN_FILE", tokenFile), nil, 0, ""},
		{"--token-file beats a wrong LATCH_TOKEN", withToken("LATCH_TOKEN", "wrong"), []string{"--token-file", tokenFile}, 0, ""},
		{"--token beats LATCH_TOKEN", withToken("LATCH_TOKEN", "wrong"), []string{"--token", token}, 0, ""},
		{"wrong token", withToken("LATCH_TOKEN", "wrong"), nil, 1, "latch: listing nodes: invalid token\n"},
		{"missing token file", withToken("LATCH_TOKEN_FILE", "/nonexistent/token"), nil, 1, "reading token file"},
		{"untrusted coordinator", withToken("LATCH_TOKEN", token), []string{"--ca-file", os.DevNull}, 1, "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := cli(t, tt.vars, append([]string{"nodes", "list"}, tt.args...)...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d, %q", code, errOut, tt.wantCode, tt.wantErr)
			}
			if code != 0 {
				oneLineErr(t, errOut)
			}
		})
	}

	// Without a CA file the system roots do not know the test CA.
	code, _, errOut := cli(t, map[string]string{"LATCH_COORDINATOR": vars["LATCH_COORDINATOR"], "LATCH_TOKEN": token}, "nodes", "list")
	if code != 1 || !strings.Contains(errOut, "cannot reach the coordinator") || !strings.Contains(errOut, "certificate") {
		t.Errorf("system roots: exit %d, stderr %q", code, errOut)
	}
	oneLineErr(t, errOut)
}
