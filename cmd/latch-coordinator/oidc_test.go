package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchnet/latch/coordinator"
)

func TestOIDCCAFileFromFlagAndConfig(t *testing.T) {
	dir := t.TempDir()
	opts, err := parseServe([]string{"--oidc-ca-file", "/etc/latch/oidc-ca.pem"})
	if err != nil || opts.cfg.OIDCCAFile != "/etc/latch/oidc-ca.pem" {
		t.Fatalf("flag: %+v, %v", opts.cfg.OIDCCAFile, err)
	}
	path := filepath.Join(dir, "config.hujson")
	os.WriteFile(path, []byte(`{"oidc-ca-file": "/srv/ca.pem", /* comment */}`), 0o600)
	opts, err = parseServe([]string{"--config", path})
	if err != nil || opts.cfg.OIDCCAFile != "/srv/ca.pem" {
		t.Fatalf("config file: %+v, %v", opts.cfg.OIDCCAFile, err)
	}
}

// A coordinator told to trust an OIDC CA file it cannot use does not start.
func TestCoordinatorRefusesUnusableOIDCCAFile(t *testing.T) {
	for name, content := range map[string]string{"missing": "", "not PEM": "hello"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := coordinator.DefaultConfig()
			cfg.DataDir = filepath.Join(dir, "data")
			cfg.Listen = "127.0.0.1:0"
			cfg.OIDCCAFile = filepath.Join(dir, "oidc-ca.pem")
			if content != "" {
				os.WriteFile(cfg.OIDCCAFile, []byte(content), 0o600)
			}
			c, err := coordinator.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				c.Close()
				t.Fatal("coordinator started")
			}
			if !strings.Contains(err.Error(), "OIDC CA file") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}
