package coordinator

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.TrustDomain = "test.internal"
	return cfg
}

// logBuffer collects log output for inspection; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// running is a coordinator serving on loopback.
type running struct {
	c      *Coordinator
	url    string
	client *http.Client
	token  string
	stop   func() error
}

func start(t *testing.T, cfg Config, log *slog.Logger) *running {
	t.Helper()
	c, err := New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln) }()
	tok, _ := os.ReadFile(filepath.Join(cfg.DataDir, BootstrapTokenFile)) // absent after bootstrap if removed
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.CA().Pool()}, ForceAttemptHTTP2: true}
	r := &running{
		c:      c,
		url:    "https://" + ln.Addr().String(),
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second},
		token:  strings.TrimSpace(string(tok)),
	}
	stopped := false
	r.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		tr.CloseIdleConnections() // else HTTP/2 shutdown waits a second for us
		cancel()
		err := <-done
		c.Close()
		return err
	}
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *running) call(t *testing.T, method, path string, hdr map[string]string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.url+path, body)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func (r *running) admin() map[string]string {
	return map[string]string{"Authorization": "Bearer " + r.token}
}

func (r *running) enroll(t *testing.T, key, host string) wire.EnrollResponse {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, priv)
	var wg wire.NodePublic
	rand.Read(wg[:])
	var resp wire.EnrollResponse
	status := r.call(t, http.MethodPost, wire.PathEnroll, map[string]string{wire.HeaderProtocol: "1"},
		wire.EnrollRequest{AuthKey: key, Hostname: host, WireGuardKey: wg, CSR: csr}, &resp)
	if status != http.StatusOK {
		t.Fatalf("enroll %s: %d", host, status)
	}
	return resp
}

func TestFirstStartWritesBootstrapTokenOnceAndNeverLogsIt(t *testing.T) {
	cfg := testConfig(t)
	var logs logBuffer
	r := start(t, cfg, logs.logger())
	path := filepath.Join(cfg.DataDir, BootstrapTokenFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bootstrap token file: %v %v", fi, err)
	}
	for _, f := range []string{"ca.key", "tls.key"} {
		if fi, err := os.Stat(filepath.Join(cfg.DataDir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
	}
	// The token works on the admin API.
	var key wire.CreateKeyResponse
	if s := r.call(t, http.MethodPost, wire.PathKeys, r.admin(), wire.CreateKeyRequest{}, &key); s != http.StatusCreated {
		t.Fatalf("create key with bootstrap token: %d", s)
	}
	r.enroll(t, key.Key, "n1")
	// It acts for the user "bootstrap", and only it exists so far.
	var toks []wire.TokenInfo
	if s := r.call(t, http.MethodGet, wire.PathTokens, r.admin(), nil, &toks); s != http.StatusOK || len(toks) != 1 || toks[0].User != BootstrapUser {
		t.Fatalf("tokens: %d %+v", s, toks)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	secret := r.token[len(r.token)-43:]
	k, _ := wire.ParseAuthKey(key.Key)
	for name, s := range map[string]string{"bootstrap token": secret, "enrollment key secret": k.Secret} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("%s appears in the logs", name)
		}
	}
	if !strings.Contains(logs.String(), "msg=listening") || !strings.Contains(logs.String(), "ca_fingerprint=sha256:") ||
		!strings.Contains(logs.String(), path) {
		t.Errorf("logs lack the listening line or the token path:\n%s", logs.String())
	}

	// A restart keeps the token and writes no new one.
	before, _ := os.ReadFile(path)
	var logs2 logBuffer
	r2 := start(t, cfg, logs2.logger())
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) || strings.Contains(logs2.String(), "bootstrap") {
		t.Fatal("restart rewrote the bootstrap token")
	}
	if s := r2.call(t, http.MethodGet, wire.PathNodes, r2.admin(), nil, nil); s != http.StatusOK {
		t.Fatalf("bootstrap token after restart: %d", s)
	}
	// Deleting the file does not bring a new token: bootstrap happens once.
	r2.stop()
	os.Remove(path)
	start(t, cfg, slog.New(slog.DiscardHandler))
	if _, err := os.Stat(path); err == nil {
		t.Fatal("a second bootstrap token was written")
	}
}

func TestSecondCoordinatorOnTheSameDataDirIsRefused(t *testing.T) {
	cfg := testConfig(t)
	start(t, cfg, slog.New(slog.DiscardHandler))
	_, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second coordinator: %v", err)
	}
}

func TestEphemeralNodesAreDeletedAfterTheGrace(t *testing.T) {
	cfg := testConfig(t)
	cfg.EphemeralGrace = time.Second
	r := start(t, cfg, slog.New(slog.DiscardHandler))
	var eph, perm wire.CreateKeyResponse
	r.call(t, http.MethodPost, wire.PathKeys, r.admin(), wire.CreateKeyRequest{Ephemeral: true}, &eph)
	r.call(t, http.MethodPost, wire.PathKeys, r.admin(), wire.CreateKeyRequest{}, &perm)
	gone := r.enroll(t, eph.Key, "ci-job")
	stays := r.enroll(t, perm.Key, "server")
	if !gone.Node.Ephemeral || stays.Node.Ephemeral {
		t.Fatal("ephemeral flag wrong")
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.call(t, http.MethodGet, wire.PathNodes+"/"+string(gone.Node.ID), r.admin(), nil, nil) != http.StatusNotFound {
		if time.Now().After(deadline) {
			t.Fatal("ephemeral node not deleted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := r.call(t, http.MethodGet, wire.PathNodes+"/"+string(stays.Node.ID), r.admin(), nil, nil); s != http.StatusOK {
		t.Fatalf("permanent node: %d", s)
	}
}

func TestConfigValidation(t *testing.T) {
	base := DefaultConfig()
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"no port", func(c *Config) { c.Listen = "localhost" }, false},
		{"no data dir", func(c *Config) { c.DataDir = "" }, false},
		{"postgres", func(c *Config) { c.DB = "postgres://u@h/db" }, false},
		{"other scheme", func(c *Config) { c.DB = "mysql://h/db" }, false},
		{"sqlite url", func(c *Config) { c.DB = "sqlite:///tmp/x.db" }, true},
		{"uppercase trust domain", func(c *Config) { c.TrustDomain = "Latch.Internal" }, false},
		{"trust domain with path", func(c *Config) { c.TrustDomain = "a/b" }, false},
		{"tiny cert lifetime", func(c *Config) { c.NodeCertLifetime = time.Second }, false},
		{"zero keepalive", func(c *Config) { c.Keepalive = 0 }, false},
	}
	for _, tt := range tests {
		c := base
		tt.mod(&c)
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	paths := map[string]string{"": "/d/latch.db", "/x/y.db": "/x/y.db", "sqlite:///x/y.db": "/x/y.db", "sqlite:rel.db": "rel.db", "file:/x.db": "/x.db"}
	for db, want := range paths {
		c := Config{DataDir: "/d", DB: db}
		if got, err := c.DBPath(); err != nil || got != want {
			t.Errorf("DBPath(%q) = %q, %v; want %q", db, got, err, want)
		}
	}
	c := Config{DataDir: "/d", DB: "postgres://x"}
	if _, err := c.DBPath(); err == nil || !strings.Contains(err.Error(), "not supported yet") {
		t.Errorf("postgres: %v", err)
	}
}
