package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/netmap"
	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

const identityTestPolicy = `{
  "tagOwners": {"tag:web": [], "tag:extra": []},
  "rules": [{"src": ["tag:web"], "dst": ["tag:web:22"]}],
}`

// realCoordinator serves the real admin API over HTTPS on a real store,
// with the policy saved and one tagged node "web" (with a posture) and
// one untagged node "laptop". It returns the environment pointing latch
// at it.
func realCoordinator(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "latch.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Init(ctx, "test.internal"); err != nil {
		t.Fatal(err)
	}
	c, _, err := ca.LoadOrCreate(dir, "test.internal", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sc, _, err := ca.LoadServerCert(c, ca.ServerCertConfig{Dir: dir, SANs: ca.SANs{IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}})
	if err != nil {
		t.Fatal(err)
	}
	hub := netmap.NewHub(netmap.HubConfig{Source: &netmap.StoreSource{Store: st}})
	off := ratelimit.Limit{Rate: -1}
	srv := httptest.NewUnstartedServer(api.New(api.Config{Store: st, CA: c, Hub: hub,
		RateLimits: api.RateLimits{EnrollPerIP: off, EnrollPerKey: off, AuthFailuresPerIP: off}}))
	srv.TLS = api.TLSConfig(c, sc.GetCertificate)
	cur, _ := sc.GetCertificate(nil)
	srv.TLS.Certificates = []tls.Certificate{*cur}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Cleanup(hub.Close)

	tok := api.NewToken()
	if _, err := st.CreateBootstrapToken(ctx, store.APIToken{ID: tok.ID, User: "admin", Scopes: []string{api.ScopeAdmin}, Created: time.Now()},
		store.HashSecret(tok.Secret)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SavePolicy(ctx, identityTestPolicy, "admin", 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		id   string
		tags []wire.Tag
		host string
	}{{"aaaaaaaaaaaa", []wire.Tag{"tag:web"}, "web"}, {"bbbbbbbbbbbb", nil, "laptop"}} {
		now := time.Now()
		if err := st.CreateEnrollmentKey(ctx, store.EnrollmentKey{ID: k.id, Tags: k.tags, Created: now, Expires: now.Add(time.Hour)},
			store.HashSecret("s")); err != nil {
			t.Fatal(err)
		}
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		var wg wire.NodePublic
		rand.Read(wg[:])
		fw := true
		if _, err := st.Enroll(ctx, store.Enrollment{NodeID: store.NewNodeID(), KeyID: k.id, SecretHash: store.HashSecret("s"),
			Hostname: k.host, WireGuardKey: wg, CertKey: pub, Now: now, CertExpires: now.Add(time.Hour),
			Posture: &wire.Posture{OS: "linux", AgentVersion: "0.4.0", Firewall: &fw}}); err != nil {
			t.Fatal(err)
		}
	}
	caFile := filepath.Join(dir, "ca-for-cli.crt")
	if err := os.WriteFile(caFile, c.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"LATCH_COORDINATOR": srv.URL, "LATCH_TOKEN": tok.String(), "LATCH_CA_FILE": caFile}
}

func TestNodeIdentityVerbsAgainstTheRealAPI(t *testing.T) {
	vars := realCoordinator(t)
	steps := []struct {
		args []string
		code int
		out  []string // each must appear in stdout (exit 0) or stderr
	}{
		{[]string{"nodes", "show", "web"}, 0, []string{"key expiry:", "certificate expires:  in 1h", "quarantined:", "posture:", "os=linux agent_version=0.4.0 firewall=true"}},
		{[]string{"nodes", "quarantine", "web", "--reason", "EDR alert 7"}, 0, []string{"quarantined node web"}},
		{[]string{"nodes", "show", "web"}, 0, []string{"yes (EDR alert 7)"}},
		{[]string{"nodes", "unquarantine", "web"}, 0, []string{"released node web from quarantine"}},
		{[]string{"nodes", "show", "web", "--json"}, 0, []string{`"name": "web"`}},
		{[]string{"nodes", "expiry", "web", "--in", "720h"}, 0, []string{"node web key expires 20"}},
		{[]string{"nodes", "expiry", "web", "--never"}, 0, []string{"node web key expires never"}},
		{[]string{"nodes", "expiry", "laptop", "--never"}, 1, []string{"latch: setting node key expiry: node laptop is untagged: only tagged"}},
		{[]string{"nodes", "expire", "laptop"}, 0, []string{"expired node laptop"}},
		{[]string{"nodes", "show", "laptop"}, 0, []string{"key expiry:", "expired"}},
		{[]string{"nodes", "quarantine", "web"}, 0, []string{"quarantined node web"}},
		{[]string{"nodes", "list"}, 0, []string{"STATE", "expired", "quarantined"}},
		{[]string{"nodes", "tag", "web", "tag:extra,tag:web"}, 0, []string{"node web tags: tag:extra,tag:web"}},
		{[]string{"nodes", "tag", "web", "tag:nosuch"}, 1, []string{"unknown tag tag:nosuch"}},
		{[]string{"nodes", "quarantine", "ghost"}, 1, []string{`node "ghost" not found`}},
		// Usage errors: exit 2, nothing sent.
		{[]string{"nodes", "expiry", "web"}, 2, []string{"pass exactly one of --in and --never"}},
		{[]string{"nodes", "expiry", "web", "--in", "1h", "--never"}, 2, []string{"pass exactly one of --in and --never"}},
		{[]string{"nodes", "tag", "web"}, 2, []string{"missing node ID or name and tags"}},
		{[]string{"nodes", "tag", "web", "web"}, 2, []string{`invalid tag "web"`}},
		{[]string{"keys", "create", "--no-node-expiry"}, 2, []string{"--no-node-expiry needs --tags"}},
		{[]string{"keys", "create", "--max-uses", "3"}, 2, []string{"--max-uses needs --reusable"}},
		{[]string{"keys", "create", "--node-expiry", "720h", "--no-node-expiry", "--tags", "tag:web"}, 2, []string{"exclude each other"}},
	}
	for _, st := range steps {
		t.Run(strings.Join(st.args, " "), func(t *testing.T) {
			code, out, errOut := cli(t, vars, st.args...)
			if code != st.code {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, st.code, out, errOut)
			}
			where := out
			if code != 0 {
				where = errOut
				oneLineErr(t, errOut)
			}
			for _, w := range st.out {
				if !strings.Contains(where, w) {
					t.Errorf("output does not contain %q:\n%s", w, where)
				}
			}
		})
	}
}

func TestKeysCreateNodeExpiryAndMaxUsesAgainstTheRealAPI(t *testing.T) {
	vars := realCoordinator(t)
	tests := []struct {
		args []string
		want wire.KeyInfo
		list string // in keys list
	}{
		{[]string{"--reusable", "--max-uses", "5", "--node-expiry", "720h"}, wire.KeyInfo{NodeExpiry: 720 * time.Hour, MaxUses: 5}, "0/5"},
		{[]string{"--tags", "tag:web", "--no-node-expiry"}, wire.KeyInfo{NoNodeExpiry: true}, "never"},
		{nil, wire.KeyInfo{NodeExpiry: store.DefaultNodeKeyExpiry}, "4320h0m0s"},
	}
	for _, tt := range tests {
		code, out, errOut := cli(t, vars, append([]string{"keys", "create", "--json"}, tt.args...)...)
		var resp wire.CreateKeyResponse
		if code != 0 || json.Unmarshal([]byte(out), &resp) != nil {
			t.Fatalf("keys create %v: exit %d, %q %q", tt.args, code, out, errOut)
		}
		if got := resp.Info; got.NodeExpiry != tt.want.NodeExpiry || got.NoNodeExpiry != tt.want.NoNodeExpiry || got.MaxUses != tt.want.MaxUses {
			t.Errorf("keys create %v: info %+v", tt.args, got)
		}
		_, list, _ := cli(t, vars, "keys", "list")
		if !strings.Contains(list, "NODE EXPIRY") || !strings.Contains(list, tt.list) {
			t.Errorf("keys list lacks %q:\n%s", tt.list, list)
		}
	}
}
