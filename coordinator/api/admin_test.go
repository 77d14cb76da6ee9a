package api

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

func TestAdminEndpointsRequireAValidToken(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	good, _ := ParseToken(e.token)
	forged := good
	forged.Secret = NewToken().Secret
	unknown := NewToken()
	mkToken := func(tok store.APIToken) string {
		tk := NewToken()
		tok.ID = tk.ID
		if tok.Created.IsZero() {
			tok.Created = time.Now()
		}
		if err := e.st.CreateAPIToken(ctx, tok, store.HashSecret(tk.Secret)); err != nil {
			t.Fatal(err)
		}
		return tk.String()
	}
	expired := mkToken(store.APIToken{Scopes: []string{ScopeAdmin}, Expires: time.Now().Add(-time.Minute)})
	readOnly := mkToken(store.APIToken{Scopes: []string{"read"}})

	auths := []struct {
		name   string
		header string
		status int
	}{
		{"missing", "", 401},
		{"not bearer", "Basic " + e.token, 401},
		{"malformed", "Bearer latchtok_zz", 401},
		{"forged secret", "Bearer " + forged.String(), 401},
		{"unknown id", "Bearer " + unknown.String(), 401},
		{"expired", "Bearer " + expired, 401},
		{"no admin scope", "Bearer " + readOnly, 403},
	}
	calls := []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, wire.PathKeys, nil},
		{http.MethodPost, wire.PathKeys, wire.CreateKeyRequest{Reusable: true}},
		{http.MethodDelete, wire.PathKeys + "/0123456789ab", nil},
		{http.MethodGet, wire.PathNodes, nil},
		{http.MethodGet, wire.PathNodes + "/x", nil},
		{http.MethodDelete, wire.PathNodes + "/x", nil},
	}
	for _, a := range auths {
		for _, c := range calls {
			t.Run(a.name+" "+c.method+" "+c.path, func(t *testing.T) {
				hdr := map[string]string{}
				if a.header != "" {
					hdr["Authorization"] = a.header
				}
				var body []byte
				if c.body != nil {
					body = mustJSON(c.body)
				}
				status, b := e.do(e.client, c.method, c.path, hdr, body)
				msg := errorMessage(t, b)
				if status != a.status {
					t.Fatalf("status %d %q, want %d", status, msg, a.status)
				}
				if strings.Contains(msg, forged.Secret) || strings.Contains(msg, good.Secret) {
					t.Fatal("error echoes a token secret")
				}
			})
		}
	}
	if a, b := errMsgFor(t, e, "Bearer "+forged.String()), errMsgFor(t, e, "Bearer "+unknown.String()); a != b {
		t.Errorf("forged and unknown tokens are distinguishable: %q vs %q", a, b)
	}
	// None of the refused creates stored a key; the valid token works.
	var keys []wire.KeyInfo
	e.admin(http.MethodGet, wire.PathKeys, nil, http.StatusOK, &keys)
	if len(keys) != 0 {
		t.Fatalf("refused requests created keys: %+v", keys)
	}
}

func errMsgFor(t *testing.T, e *env, auth string) string {
	_, b := e.do(e.client, http.MethodGet, wire.PathNodes, map[string]string{"Authorization": auth}, nil)
	return errorMessage(t, b)
}

func TestCreateKeyShowsTheSecretOnce(t *testing.T) {
	e := newEnv(t, nil)
	resp := e.createKey(wire.CreateKeyRequest{Reusable: true, Ephemeral: true, Tags: []wire.Tag{"tag:b", "tag:a", "tag:b"},
		Expiry: 2 * time.Hour, Description: "multi\nline"})
	k, err := wire.ParseAuthKey(resp.Key)
	if err != nil {
		t.Fatal(err)
	}
	if k.CAFingerprint != e.ca.Fingerprint() || k.ID != resp.Info.ID {
		t.Fatal("key does not carry the CA fingerprint and its ID")
	}
	i := resp.Info
	if !i.Reusable || !i.Ephemeral || len(i.Tags) != 2 || i.Tags[0] != "tag:a" || i.Description != "multi line" ||
		i.Expires.Sub(i.Created) != 2*time.Hour || i.Uses != 0 || i.Revoked != nil {
		t.Fatalf("info %+v", i)
	}
	_, list := e.do(e.client, http.MethodGet, wire.PathKeys, e.adminHdr(), nil)
	if strings.Contains(string(list), k.Secret) {
		t.Fatal("key list shows the secret")
	}
	// Default expiry is 24h.
	def := e.createKey(wire.CreateKeyRequest{})
	if d := def.Info.Expires.Sub(def.Info.Created); d != DefaultKeyExpiry {
		t.Fatalf("default expiry %v", d)
	}
	// Revoking is idempotent and visible.
	e.admin(http.MethodDelete, wire.PathKeys+"/"+k.ID, nil, http.StatusNoContent, nil)
	e.admin(http.MethodDelete, wire.PathKeys+"/"+k.ID, nil, http.StatusNoContent, nil)
	var keys []wire.KeyInfo
	e.admin(http.MethodGet, wire.PathKeys, nil, http.StatusOK, &keys)
	if len(keys) != 2 || keys[0].Revoked == nil {
		t.Fatalf("keys %+v", keys)
	}
	e.admin(http.MethodDelete, wire.PathKeys+"/ffffffffffff", nil, http.StatusNotFound, nil)
}

func TestCreateKeyRefusesBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name string
		body string
		want int
	}{
		{"negative expiry", `{"expiry":-1}`, 400},
		{"expiry over 90 days", `{"expiry":7776000000000001}`, 400},
		{"bad tag", `{"tags":["tag:"]}`, 400},
		{"uppercase tag", `{"tags":["tag:Web"]}`, 400},
		{"unknown field", `{"reusable":true,"forever":true}`, 400},
		{"wrong type", `{"reusable":"yes"}`, 400},
		{"long description", `{"description":"` + strings.Repeat("d", 300) + `"}`, 400},
		{"oversized", `{"description":"` + strings.Repeat("d", wire.MaxRequestBytes) + `"}`, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := e.do(e.client, http.MethodPost, wire.PathKeys, e.adminHdr(), []byte(tt.body))
			errorMessage(t, b)
			if status != tt.want {
				t.Fatalf("status %d, want %d: %s", status, tt.want, b)
			}
		})
	}
	var keys []wire.KeyInfo
	e.admin(http.MethodGet, wire.PathKeys, nil, http.StatusOK, &keys)
	if len(keys) != 0 {
		t.Fatalf("refused requests created keys: %+v", keys)
	}
}

func TestNodesListShowDelete(t *testing.T) {
	e := newEnv(t, nil)
	key := e.createKey(wire.CreateKeyRequest{Reusable: true})
	a := e.enroll(key.Key, "web")
	b := e.enroll(key.Key, "web")
	var list []wire.NodeInfo
	e.admin(http.MethodGet, wire.PathNodes, nil, http.StatusOK, &list)
	if len(list) != 2 || list[0].Name != "web" || list[1].Name != "web-2" || list[1].ID != b.resp.Node.ID {
		t.Fatalf("list %+v", list)
	}
	var byID, byName wire.NodeInfo
	e.admin(http.MethodGet, wire.PathNodes+"/"+string(a.resp.Node.ID), nil, http.StatusOK, &byID)
	e.admin(http.MethodGet, wire.PathNodes+"/web", nil, http.StatusOK, &byName)
	if byID.ID != a.resp.Node.ID || byName.ID != a.resp.Node.ID || byID.LastSeen.IsZero() {
		t.Fatalf("show: %+v %+v", byID, byName)
	}
	e.admin(http.MethodDelete, wire.PathNodes+"/web-2", nil, http.StatusNoContent, nil)
	e.admin(http.MethodDelete, wire.PathNodes+"/web-2", nil, http.StatusNotFound, nil)
	e.admin(http.MethodGet, wire.PathNodes, nil, http.StatusOK, &list)
	if len(list) != 1 {
		t.Fatalf("after delete %+v", list)
	}
}

func TestUnknownRoutesAndMethodsGetJSONErrors(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/nope", 404},
		{http.MethodGet, "/api/v1/keys/", 404},
		{http.MethodPut, wire.PathKeys, 405},
		{http.MethodGet, wire.PathEnroll, 405},
		{http.MethodPost, wire.PathNodes, 405},
	}
	for _, tt := range tests {
		status, b := e.do(e.client, tt.method, tt.path, e.adminHdr(), nil)
		errorMessage(t, b)
		if status != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, status, tt.want)
		}
	}
	status, b := e.do(e.client, http.MethodGet, "/healthz", nil, nil)
	if status != 200 || string(b) != "ok" {
		t.Fatalf("healthz: %d %q", status, b)
	}
}

func TestTokenFormat(t *testing.T) {
	tok := NewToken()
	s := tok.String()
	if !strings.HasPrefix(s, "latchtok_") || len(s) != len("latchtok_")+12+1+43 {
		t.Fatalf("token %q", s)
	}
	got, err := ParseToken(s)
	if err != nil || got != tok {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{
		"", "latchtok", "latchtok__", "latchkey_" + tok.ID + "_" + tok.Secret,
		"latchtok_0123456789AB_" + tok.Secret, // IDs are lowercase hex (a random ID may have no letter to upcase)
		"latchtok_" + tok.ID + "_" + tok.Secret[:42],
		"latchtok_" + tok.ID + "_" + tok.Secret + "A",
		"latchtok_" + tok.ID[:11] + "g_" + tok.Secret,
	} {
		if _, err := ParseToken(bad); err == nil {
			t.Errorf("accepted %q", bad)
		} else if strings.Contains(err.Error(), tok.Secret) {
			t.Errorf("error echoes the secret")
		}
	}
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestSecretsNeverReachTheLogs(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	key := e.createKey(wire.CreateKeyRequest{})
	k, _ := wire.ParseAuthKey(key.Key)
	wrong := k
	wrong.Secret = NewToken().Secret
	e.do(e.client, http.MethodPost, wire.PathEnroll, agentHdr(), mustJSON(newAgent().request(wrong.String(), "x")))
	e.enroll(key.Key, "ok")
	e.do(e.client, http.MethodPost, wire.PathEnroll, agentHdr(), mustJSON(newAgent().request(key.Key, "again")))
	forged, _ := ParseToken(e.token)
	forged.Secret = NewToken().Secret
	e.do(e.client, http.MethodGet, wire.PathNodes, map[string]string{"Authorization": "Bearer " + forged.String()}, nil)
	admin, _ := ParseToken(e.token)
	out := logs.String()
	if !strings.Contains(out, "enrollment refused") || !strings.Contains(out, "refused API token") {
		t.Fatalf("expected refusals to be logged:\n%s", out)
	}
	for name, secret := range map[string]string{
		"enrollment key secret": k.Secret, "wrong key secret": wrong.Secret,
		"admin token secret": admin.Secret, "forged token secret": forged.Secret,
	} {
		if strings.Contains(out, secret) {
			t.Errorf("%s appears in the logs", name)
		}
	}
}
