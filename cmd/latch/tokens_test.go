package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// fakeTokens is the coordinator's token API.
type fakeTokens struct {
	mu      sync.Mutex
	created []wire.CreateTokenRequest
	revoked []string
}

func (f *fakeTokens) routes(mux *http.ServeMux) {
	now := time.Now()
	revokedAt := now.Add(-time.Hour)
	list := []wire.TokenInfo{
		{ID: "0123456789ab", User: "admin", Scopes: []string{"admin"}, Description: "bootstrap", Created: now.Add(-48 * time.Hour)},
		{ID: "aaaaaaaaaaaa", User: "alice@example.com", Scopes: []string{"access:approve", "nodes:read"}, Created: now, Expires: now.Add(720 * time.Hour)},
		{ID: "bbbbbbbbbbbb", User: "ci", Scopes: []string{"policy:write"}, Created: now, Expires: now.Add(time.Hour), Revoked: &revokedAt},
	}
	mux.HandleFunc("POST /api/v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		var req wire.CreateTokenRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(wire.Error{Message: "malformed request"})
			return
		}
		f.mu.Lock()
		f.created = append(f.created, req)
		f.mu.Unlock()
		info := wire.TokenInfo{ID: "cccccccccccc", User: req.User, Scopes: req.Scopes, Description: req.Description, Created: now, Expires: now.Add(cmpOr(req.Expiry, 90*24*time.Hour))}
		json.NewEncoder(w).Encode(wire.CreateTokenResponse{Token: "latchtok_cccccccccccc_the-secret", Info: info})
	})
	mux.HandleFunc("GET /api/v1/tokens", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(list) })
	mux.HandleFunc("DELETE /api/v1/tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.revoked = append(f.revoked, r.PathValue("id"))
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func TestTokensVerbs(t *testing.T) {
	f := &fakeTokens{}
	mux := http.NewServeMux()
	f.routes(mux)
	vars := serveTLS(t, &fakeAdmin{}, mux)

	code, out, errOut := cli(t, vars, "tokens", "create", "--user", "alice@example.com", "--scopes", "access:approve, nodes:read,access:approve", "--expiry", "720h", "--description", "on-call")
	if code != 0 || out != "latchtok_cccccccccccc_the-secret\n" {
		t.Errorf("tokens create: exit %d, stdout %q", code, out)
	}
	for _, want := range []string{"will not be shown again", "cccccccccccc", "alice@example.com", "access:approve,nodes:read", "on-call"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("tokens create stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "the-secret") {
		t.Error("the token's secret is on stderr too")
	}
	want := wire.CreateTokenRequest{User: "alice@example.com", Scopes: []string{"access:approve", "nodes:read"}, Description: "on-call", Expiry: 720 * time.Hour}
	if len(f.created) != 1 || f.created[0].User != want.User || !slices.Equal(f.created[0].Scopes, want.Scopes) || f.created[0].Expiry != want.Expiry || f.created[0].Description != want.Description {
		t.Errorf("create request = %+v, want %+v", f.created, want)
	}

	code, out, _ = cli(t, vars, "tokens", "create", "--user", "ci", "--scopes", "policy:write", "--json")
	var created wire.CreateTokenResponse
	if code != 0 || json.Unmarshal([]byte(out), &created) != nil || created.Token != "latchtok_cccccccccccc_the-secret" || created.Info.User != "ci" {
		t.Errorf("tokens create --json: exit %d, %q", code, out)
	}
	if f.created[1].Expiry != 0 {
		t.Errorf("default expiry sent as %v, want 0 (the coordinator's default)", f.created[1].Expiry)
	}

	code, out, _ = cli(t, vars, "tokens", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !slices.Equal(strings.Fields(lines[0]), []string{"ID", "USER", "SCOPES", "STATE", "EXPIRES", "DESCRIPTION"}) {
		t.Fatalf("tokens list: exit %d\n%s", code, out)
	}
	for i, want := range [][]string{
		{"0123456789ab", "admin", "admin", "active", "never", "bootstrap"},
		{"aaaaaaaaaaaa", "alice@example.com", "access:approve,nodes:read", "active"},
		{"bbbbbbbbbbbb", "ci", "policy:write", "revoked"},
	} {
		if got := strings.Fields(lines[i+1]); len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
			t.Errorf("row %d = %q, want prefix %q", i+1, got, want)
		}
	}
	code, out, _ = cli(t, vars, "tokens", "list", "--json")
	var tokens []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &tokens) != nil || len(tokens) != 3 || tokens[1]["user"] != "alice@example.com" {
		t.Errorf("tokens list --json: exit %d, %q", code, out)
	}

	if code, out, _ = cli(t, vars, "tokens", "revoke", "aaaaaaaaaaaa"); code != 0 || out != "revoked API token aaaaaaaaaaaa\n" || !slices.Equal(f.revoked, []string{"aaaaaaaaaaaa"}) {
		t.Errorf("tokens revoke: exit %d, %q, revoked %q", code, out, f.revoked)
	}
}

func TestTokensUsageErrors(t *testing.T) {
	admin := map[string]string{"LATCH_COORDINATOR": "https://127.0.0.1:1", "LATCH_TOKEN": "t"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "--scopes", "admin"}, "--user is required"},
		{[]string{"create", "--user", "a"}, "--scopes is required"},
		{[]string{"create", "--user", "a", "--scopes", "admin,root"}, `unknown scope "root" (known: admin, nodes:read,`},
		{[]string{"create", "--user", "a", "--scopes", "admin", "--expiry", "-1h"}, "--expiry must be positive"},
		{[]string{"revoke"}, "missing token ID"},
	} {
		code, out, errOut := cli(t, admin, append([]string{"tokens"}, tt.args...)...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("latch tokens %s: exit %d, stdout %q, stderr %q; want 2 and %q", strings.Join(tt.args, " "), code, out, errOut, tt.want)
		}
		oneLineErr(t, errOut)
	}
}
