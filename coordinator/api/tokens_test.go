package api

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

func TestTokensAreShownOnceAndStoredHashed(t *testing.T) {
	e := newEnv(t, nil)
	var resp wire.CreateTokenResponse
	e.admin(http.MethodPost, wire.PathTokens, wire.CreateTokenRequest{User: "alice@example.com",
		Scopes: []string{wire.ScopePolicyWrite, wire.ScopeNodesRead, wire.ScopeNodesRead}, Description: "laptop\ncli", Expiry: 48 * time.Hour},
		http.StatusCreated, &resp)
	tok, err := ParseToken(resp.Token)
	if err != nil || tok.ID != resp.Info.ID {
		t.Fatalf("token %v", err)
	}
	i := resp.Info
	if i.User != "alice@example.com" || !slices.Equal(i.Scopes, []string{wire.ScopeNodesRead, wire.ScopePolicyWrite}) ||
		i.Description != "laptop cli" || i.Expires.Sub(i.Created) != 48*time.Hour || i.Revoked != nil {
		t.Fatalf("info %+v", i)
	}
	// It works within its scopes.
	e.as(resp.Token, http.MethodGet, wire.PathNodes, nil, http.StatusOK, nil)
	_, list := e.do(e.client, http.MethodGet, wire.PathTokens, e.adminHdr(), nil)
	if strings.Contains(string(list), tok.Secret) || !strings.Contains(string(list), tok.ID) {
		t.Fatal("token list shows the secret or lacks the token")
	}
	var infos []wire.TokenInfo
	e.admin(http.MethodGet, wire.PathTokens, nil, http.StatusOK, &infos)
	if len(infos) != 2 || infos[0].User != "bootstrap" || infos[1].ID != tok.ID {
		t.Fatalf("tokens %+v", infos)
	}
	// The secret is nowhere in the database files.
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(e.dbPath()), "latch.db*"))
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte(tok.Secret)) || bytes.Contains(b, []byte(resp.Token)) {
			t.Errorf("token secret in plain text in %s", filepath.Base(f))
		}
	}
	// Revoked: refused at once; revoking twice is fine; unknown is 404.
	e.admin(http.MethodDelete, wire.PathTokens+"/"+tok.ID, nil, http.StatusNoContent, nil)
	e.admin(http.MethodDelete, wire.PathTokens+"/"+tok.ID, nil, http.StatusNoContent, nil)
	e.as(resp.Token, http.MethodGet, wire.PathNodes, nil, http.StatusUnauthorized, nil)
	e.admin(http.MethodDelete, wire.PathTokens+"/ffffffffffff", nil, http.StatusNotFound, nil)
}

func TestCreateTokenRefusesBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name string
		body string
		want int
	}{
		{"no user", `{"scopes":["admin"]}`, 400},
		{"user with space", `{"user":"alice smith","scopes":["admin"]}`, 400},
		{"reserved user", `{"user":"policy","scopes":["admin"]}`, 400},
		{"no scopes", `{"user":"alice"}`, 400},
		{"unknown scope", `{"user":"alice","scopes":["root"]}`, 400},
		{"negative expiry", `{"user":"alice","scopes":["admin"],"expiry":-1}`, 400},
		{"expiry too long", `{"user":"alice","scopes":["admin"],"expiry":99999999999999999}`, 400},
		{"unknown field", `{"user":"alice","scopes":["admin"],"forever":true}`, 400},
		{"oversized", `{"user":"` + strings.Repeat("a", wire.MaxRequestBytes) + `"}`, 413},
	}
	for _, tt := range tests {
		status, b := e.do(e.client, http.MethodPost, wire.PathTokens, e.adminHdr(), []byte(tt.body))
		errorMessage(t, b)
		if status != tt.want {
			t.Errorf("%s: %d, want %d: %s", tt.name, status, tt.want, b)
		}
	}
	var infos []wire.TokenInfo
	e.admin(http.MethodGet, wire.PathTokens, nil, http.StatusOK, &infos)
	if len(infos) != 1 {
		t.Fatalf("refused requests created tokens: %+v", infos)
	}
}

// TestEveryAdminRouteEnforcesItsScope calls every admin route with a
// token of each scope: outside its scope a call gets 403 and changes
// nothing; inside, it gets past authorization (whatever the handler then
// says about the request itself).
func TestEveryAdminRouteEnforcesItsScope(t *testing.T) {
	e := newEnv(t, nil)
	routes := []struct {
		method, path string
		body         any
		scope        string
	}{
		{http.MethodGet, wire.PathNodes, nil, wire.ScopeNodesRead},
		{http.MethodGet, wire.PathNodes + "/x", nil, wire.ScopeNodesRead},
		{http.MethodDelete, wire.PathNodes + "/x", nil, wire.ScopeNodesWrite},
		{http.MethodGet, wire.PathKeys, nil, wire.ScopeKeysWrite},
		{http.MethodPost, wire.PathKeys, wire.CreateKeyRequest{Expiry: -1}, wire.ScopeKeysWrite},
		{http.MethodDelete, wire.PathKeys + "/ffffffffffff", nil, wire.ScopeKeysWrite},
		{http.MethodGet, wire.PathPolicy, nil, wire.ScopeNodesRead},
		{http.MethodGet, wire.PathPolicyVersions, nil, wire.ScopeNodesRead},
		{http.MethodGet, wire.PathPolicyVersions + "/1", nil, wire.ScopeNodesRead},
		{http.MethodPost, wire.PathPolicy, wire.SetPolicyRequest{Source: "{", DryRun: true}, wire.ScopePolicyWrite},
		{http.MethodPost, wire.PathPolicyVersions + "/1/restore", nil, wire.ScopePolicyWrite},
		{http.MethodGet, wire.PathAccess, nil, wire.ScopeAccessApprove},
		{http.MethodPost, wire.PathAccess + "/ffffffffffff/approve", nil, wire.ScopeAccessApprove},
		{http.MethodPost, wire.PathAccess + "/ffffffffffff/deny", nil, wire.ScopeAccessApprove},
		{http.MethodPost, wire.PathAccess + "/ffffffffffff/revoke", nil, wire.ScopeAccessApprove},
		{http.MethodGet, wire.PathTokens, nil, wire.ScopeAdmin},
		{http.MethodPost, wire.PathTokens, wire.CreateTokenRequest{}, wire.ScopeAdmin},
		{http.MethodDelete, wire.PathTokens + "/ffffffffffff", nil, wire.ScopeAdmin},
	}
	tokens := map[string]string{}
	for _, sc := range Scopes {
		tokens[sc] = e.createToken("user-"+strings.ReplaceAll(sc, ":", "-"), sc)
	}
	for _, rt := range routes {
		for sc, tok := range tokens {
			t.Run(rt.method+" "+rt.path+" as "+sc, func(t *testing.T) {
				var body []byte
				if rt.body != nil {
					body = mustJSON(rt.body)
				}
				status, b := e.do(e.client, rt.method, rt.path, map[string]string{"Authorization": "Bearer " + tok}, body)
				allowed := sc == rt.scope || sc == wire.ScopeAdmin
				if allowed && (status == http.StatusForbidden || status == http.StatusUnauthorized) {
					t.Fatalf("refused inside its scope: %d %s", status, b)
				}
				if !allowed {
					if status != http.StatusForbidden {
						t.Fatalf("status %d %s, want 403", status, b)
					}
					if msg := errorMessage(t, b); !strings.Contains(msg, rt.scope) {
						t.Fatalf("message %q does not name the scope %s", msg, rt.scope)
					}
				}
			})
		}
	}
	var infos []wire.TokenInfo
	e.admin(http.MethodGet, wire.PathTokens, nil, http.StatusOK, &infos)
	if len(infos) != 1+len(Scopes) {
		t.Fatalf("%d tokens: a refused call created one", len(infos))
	}
}

func TestKeysCarryTheirCreatorSoNodesHaveOwners(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.createToken("alice@example.com", wire.ScopeKeysWrite)
	var key wire.CreateKeyResponse
	e.as(alice, http.MethodPost, wire.PathKeys, wire.CreateKeyRequest{}, http.StatusCreated, &key)
	a := e.enroll(key.Key, "laptop")
	n, err := e.st.Node(t.Context(), a.resp.Node.ID)
	if err != nil || n.Owner != "alice@example.com" || n.PolicyOwner() != "alice@example.com" {
		t.Fatalf("node %+v, %v", n, err)
	}
	// A policy naming alice lets her laptop reach the web server.
	wkey := e.createKey(wire.CreateKeyRequest{Tags: []wire.Tag{"tag:web"}})
	w := e.enroll(wkey.Key, "web")
	e.setPolicy(`{
  "tagOwners": {"tag:web": []},
  "rules": [{"src": ["alice@example.com"], "dst": ["tag:web:443/tcp"]}],
}`)
	f := e.follow(w)
	if p, ok := f.peer("laptop"); !ok || len(p.Rules) != 1 {
		t.Fatalf("web's netmap %+v: want alice's laptop admitted", f.nm)
	}
}
