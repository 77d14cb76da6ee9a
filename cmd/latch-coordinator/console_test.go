package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// The web console's settings come from flags or the config file (issue 6).
func TestConsoleOptionsFromFlagsAndFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.hujson")
	if err := os.WriteFile(path, []byte(`{
  "console-session-lifetime": "8h",
  "console-idle-timeout": "20m",
  "console-host": ["latch.example.com", "proxy.example.com"],
}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		args         []string
		disabled     bool
		life, idle   time.Duration
		wantHostsLen int
	}{
		{"defaults", nil, false, 0, 0, 0},
		{"flags", []string{"--console=false", "--console-session-lifetime", "2h", "--console-idle-timeout", "5m", "--console-host", "a.example,b.example"}, true, 2 * time.Hour, 5 * time.Minute, 2},
		{"file", []string{"--config", path}, false, 8 * time.Hour, 20 * time.Minute, 2},
		{"flag-over-file", []string{"--config", path, "--console-idle-timeout", "1m"}, false, 8 * time.Hour, time.Minute, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := parseServe(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			c := opts.cfg.Console
			if c.Disabled != tt.disabled || c.SessionLifetime != tt.life || c.IdleTimeout != tt.idle || len(c.Hosts) != tt.wantHostsLen {
				t.Errorf("console config %+v", c)
			}
			if tt.name == "file" && !slices.Contains(c.Hosts, "proxy.example.com") {
				t.Errorf("hosts %v", c.Hosts)
			}
		})
	}
}

// Console OIDC sign-in is configured by flags (or the file); incomplete
// or insecure settings are refused with one line.
func TestConsoleOIDCOptions(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := []string{"--console-oidc-issuer", "https://idp.example.com", "--console-oidc-client-id", "latch",
		"--console-oidc-client-secret-file", secret, "--console-oidc-redirect-url", "https://latch.example.com/console/oidc/callback"}
	opts, err := parseServe(ok)
	if err != nil {
		t.Fatal(err)
	}
	if c := opts.cfg.Console; c.OIDCIssuer != "https://idp.example.com" || c.OIDCClientID != "latch" || c.OIDCClientSecretFile != secret ||
		c.OIDCRedirectURL != "https://latch.example.com/console/oidc/callback" {
		t.Errorf("console config %+v", c)
	}
	for _, bad := range [][]string{
		{"--console-oidc-issuer", "https://idp.example.com"},
		{"--console-oidc-client-id", "latch"},
		{"--console-oidc-issuer", "http://idp.example.com", "--console-oidc-client-id", "latch"},
		{"--console-oidc-client-secret-file", secret},
		{"--console-oidc-issuer", "https://idp.example.com", "--console-oidc-client-id", "latch", "--console-oidc-redirect-url", "https://latch.example.com/elsewhere"},
	} {
		if _, err := parseServe(bad); err == nil {
			t.Errorf("parseServe(%q) accepted", bad)
		}
	}
}
