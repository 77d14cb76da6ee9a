package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

func TestTrustVerbs(t *testing.T) {
	var (
		mu      sync.Mutex
		created wire.TrustRuleRequest
		deleted string
	)
	rule := wire.TrustRule{ID: "tr0123456789ab", Created: time.Now(), Uses: 2, TrustRuleRequest: wire.TrustRuleRequest{
		Name: "gha-deploy", Issuer: "https://token.actions.example.com", Audience: "latch",
		Claims: map[string]string{"sub": "repo:acme/app:ref:refs/heads/main", "repository_owner": "acme"},
		Tags:   []wire.Tag{"tag:ci"}, Ephemeral: true, MaxLifetime: time.Hour,
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathTrustRules, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		json.NewDecoder(r.Body).Decode(&created)
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(rule)
	})
	mux.HandleFunc("GET "+wire.PathTrustRules, func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode([]wire.TrustRule{rule}) })
	mux.HandleFunc("DELETE "+wire.PathTrustRules+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		deleted = r.PathValue("id")
		mu.Unlock()
		json.NewEncoder(w).Encode(rule)
	})
	vars := serveTLS(t, &fakeAdmin{}, mux)

	code, out, errOut := cli(t, vars, "trust", "create", "--name", "gha-deploy", "--issuer", "https://token.actions.example.com",
		"--audience", "latch", "--claim", "sub=repo:acme/app:ref:refs/heads/main", "--claim", "repository_owner=acme",
		"--tags", "tag:ci", "--ephemeral", "--max-lifetime", "30m")
	if code != 0 || !strings.Contains(out, "sub=repo:acme/app:ref:refs/heads/main repository_owner=acme") {
		t.Fatalf("trust create: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if created.Name != "gha-deploy" || created.Claims["repository_owner"] != "acme" || !created.Ephemeral ||
		created.MaxLifetime != 30*time.Minute || len(created.Tags) != 1 {
		t.Fatalf("coordinator got %+v", created)
	}
	code, out, _ = cli(t, vars, "trust", "list")
	if code != 0 || !strings.Contains(out, "gha-deploy") || !strings.Contains(out, "MAX LIFETIME") {
		t.Fatalf("trust list: exit %d, %q", code, out)
	}
	code, out, _ = cli(t, vars, "trust", "list", "--json")
	var got []wire.TrustRule
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != 1 || got[0].ID != rule.ID {
		t.Fatalf("trust list --json: exit %d, %q", code, out)
	}
	if code, _, errOut := cli(t, vars, "trust", "delete", "gha-deploy"); code != 0 || deleted != "gha-deploy" {
		t.Fatalf("trust delete: exit %d, deleted %q, stderr %q", code, deleted, errOut)
	}
}

func TestTrustAndIDTokenUsageErrors(t *testing.T) {
	fp := "sha256:" + strings.Repeat("ab", 32)
	tokFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokFile, []byte("aaa.bbb.ccc\n"), 0o600)
	tests := []struct {
		args []string
		vars map[string]string
		want string
	}{
		{[]string{"trust", "create", "--issuer", "https://x", "--audience", "a", "--claim", "sub=x", "--tags", "tag:ci"}, nil, "--name required"},
		{[]string{"trust", "create", "--name", "n", "--issuer", "https://x", "--audience", "a", "--tags", "tag:ci"}, nil, "sub=PATTERN"},
		{[]string{"trust", "create", "--name", "n", "--issuer", "https://x", "--audience", "a", "--claim", "sub"}, nil, "NAME=PATTERN"},
		{[]string{"trust", "create", "--name", "n", "--issuer", "https://x", "--audience", "a", "--claim", "sub=x"}, nil, "--tags required"},
		{[]string{"up", "--coordinator", "https://c", "--id-token", "aaa.bbb.ccc"}, nil, "--ca-fingerprint"},
		{[]string{"up", "--coordinator", "https://c", "--id-token-file", tokFile}, nil, "--ca-fingerprint"},
		{[]string{"up", "--coordinator", "https://c"}, map[string]string{"LATCH_ID_TOKEN": "aaa.bbb.ccc"}, "--ca-fingerprint"},
		{[]string{"up", "--coordinator", "https://c", "--id-token", "aaa.bbb.ccc", "--ca-fingerprint", "sha256:abc"}, nil, "64 hex digits"},
		{[]string{"up", "--coordinator", "https://c", "--id-token", "not-a-jwt", "--ca-fingerprint", fp}, nil, "not a JWT"},
		{[]string{"up", "--coordinator", "https://c", "--id-token", "a.b.c", "--id-token-file", tokFile, "--ca-fingerprint", fp}, nil, "not both"},
	}
	for _, tt := range tests {
		code, _, errOut := cli(t, tt.vars, tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("latch %s: exit %d, stderr %q, want exit 2 with %q", strings.Join(tt.args, " "), code, errOut, tt.want)
		}
		oneLineErr(t, errOut)
		if strings.Contains(errOut, "aaa.bbb.ccc") {
			t.Errorf("latch %s: the token is echoed: %q", strings.Join(tt.args, " "), errOut)
		}
	}
}

func TestUpWithIDTokenSendsTokenAndPin(t *testing.T) {
	f := &fakeAgent{}
	vars := serveAgent(t, f)
	fp := "sha256:" + strings.Repeat("AB:", 31) + "AB"
	tokFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokFile, []byte("hdr.payload.sig\n"), 0o600)
	code, _, errOut := cli(t, vars, "up", "--coordinator", "https://c:8443", "--id-token-file", tokFile, "--ca-fingerprint", fp, "--ephemeral")
	if code != 0 {
		t.Fatalf("up: exit %d, %q", code, errOut)
	}
	if f.up.IDToken != "hdr.payload.sig" || f.up.CAFingerprint != fp || f.up.AuthKey != "" || !f.up.Ephemeral {
		t.Fatalf("agent got %+v", f.up)
	}
	// From the environment.
	vars["LATCH_ID_TOKEN"] = "env.token.sig"
	vars["LATCH_CA_FINGERPRINT"] = fp
	if code, _, errOut := cli(t, vars, "up", "--coordinator", "https://c:8443"); code != 0 || f.up.IDToken != "env.token.sig" {
		t.Fatalf("up from env: exit %d, %q, agent got %q", code, errOut, f.up.IDToken)
	}
}
