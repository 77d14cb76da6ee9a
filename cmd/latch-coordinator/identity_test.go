package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNodeKeyExpiryFlagAndConfigKey(t *testing.T) {
	dir := t.TempDir()
	file := func(v string) string {
		p := filepath.Join(dir, strings.ReplaceAll(v, "/", "_")+".hujson")
		os.WriteFile(p, []byte(`{"node-key-expiry": "`+v+`"}`), 0o600)
		return p
	}
	tests := []struct {
		name string
		args []string
		want time.Duration
		err  string
	}{
		{"default", nil, 4320 * time.Hour, ""},
		{"flag", []string{"--node-key-expiry", "720h"}, 720 * time.Hour, ""},
		{"config key", []string{"--config", file("24h")}, 24 * time.Hour, ""},
		{"flag wins over the file", []string{"--config", file("24h"), "--node-key-expiry", "48h"}, 48 * time.Hour, ""},
		{"too short", []string{"--node-key-expiry", "1s"}, 0, "node key expiry 1s"},
		{"too long", []string{"--node-key-expiry", "100000h"}, 0, "node key expiry"},
		{"bad in file", []string{"--config", file("soon")}, 0, "node-key-expiry: want a duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := parseServe(tt.args)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if opts.cfg.NodeKeyExpiry != tt.want {
				t.Fatalf("node key expiry %v, want %v", opts.cfg.NodeKeyExpiry, tt.want)
			}
		})
	}
}
