package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHelpAndUsageErrors(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		stdout   string // substring
		stderrRE string // substring; stderr must be one line when set
	}{
		{[]string{"--help"}, 0, "latch-coordinator <command>", ""},
		{[]string{"serve", "--help"}, 0, "--node-cert-lifetime", ""},
		{[]string{"serve", "-h"}, 0, "--server-name NAME", ""},
		{[]string{"nope"}, 2, "", `unknown command "nope"`},
		{[]string{"serve", "--bogus"}, 2, "", "flag provided but not defined"},
		{[]string{"serve", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"serve", "--db", "postgres://db/latch"}, 2, "", "PostgreSQL is not supported yet"},
		{[]string{"serve", "--keepalive", "soon"}, 2, "", "invalid value"},
		{[]string{"serve", "--log-level", "loud"}, 2, "", `log level "loud"`},
		{[]string{"serve", "--config", "/nonexistent/latch.hujson"}, 2, "", "reading config"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tt.stdout)
			}
			if tt.stderrRE != "" {
				s := stderr.String()
				if !strings.Contains(s, tt.stderrRE) || strings.Count(s, "\n") != 1 {
					t.Errorf("stderr %q: want one line containing %q", s, tt.stderrRE)
				}
			}
		})
	}
}

func TestConfigFileThenFlags(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "coordinator.hujson")
	os.WriteFile(path, []byte(`{
		// HuJSON: comments and trailing commas are fine.
		"listen": "127.0.0.1:9443",
		"data-dir": "/srv/latch",
		"server-name": ["a.example.com", "10.0.0.1,b.example.com"],
		"trust-domain": "corp.internal",
		"node-cert-lifetime": "30m",
		"keepalive": "5s",
		"log-level": "debug",
	}`), 0o600)
	opts, err := parseServe([]string{"--config", path, "--keepalive", "20s", "--server-name", "c.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	c := opts.cfg
	if c.Listen != "127.0.0.1:9443" || c.DataDir != "/srv/latch" || c.TrustDomain != "corp.internal" ||
		c.NodeCertLifetime != 30*time.Minute || opts.level != slog.LevelDebug {
		t.Fatalf("file values not applied: %+v", c)
	}
	if c.Keepalive != 20*time.Second || !slices.Equal(c.ServerNames, []string{"c.example.com"}) {
		t.Fatalf("flags did not override the file: keepalive %v, names %v", c.Keepalive, c.ServerNames)
	}
	if c.EphemeralGrace != 8*time.Second || c.DB != "" {
		t.Fatalf("defaults lost: %+v", c)
	}
	opts, err = parseServe([]string{"--config", path})
	if err != nil || !slices.Equal(opts.cfg.ServerNames, []string{"a.example.com", "10.0.0.1", "b.example.com"}) {
		t.Fatalf("server names from file: %v %v", opts.cfg.ServerNames, err)
	}

	for name, body := range map[string]string{
		"unknown key":  `{"listen": ":1", "port": 3}`,
		"bad duration": `{"keepalive": "often"}`,
		"bad names":    `{"server-name": 7}`,
		"not json":     `listen = ":1"`,
	} {
		os.WriteFile(path, []byte(body), 0o600)
		if _, err := parseServe([]string{"--config", path}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestDefaults(t *testing.T) {
	opts, err := parseServe(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := opts.cfg
	if c.Listen != ":8443" || c.DataDir != "/var/lib/latch-coordinator" || c.TrustDomain != "latch.internal" ||
		c.NodeCertLifetime != time.Hour || c.Keepalive != 10*time.Second || opts.level != slog.LevelInfo {
		t.Fatalf("defaults %+v", c)
	}
	if p, _ := c.DBPath(); p != "/var/lib/latch-coordinator/latch.db" {
		t.Fatalf("default db %q", p)
	}
}
