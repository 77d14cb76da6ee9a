package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/agent"
)

func TestPostureIntervalFlagAndConfigKey(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "latchd.json")
	if err := os.WriteFile(file, []byte(`{"posture_interval": "2m"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		want    time.Duration
		wantErr string
	}{
		{name: "default", want: agent.DefaultPostureInterval},
		{name: "flag", args: []string{"--posture-interval", "1s"}, want: time.Second},
		{name: "config key", args: []string{"--config", file}, want: 2 * time.Minute},
		{name: "flag overrides config", args: []string{"--config", file, "--posture-interval", "45s"}, want: 45 * time.Second},
		{name: "too short", args: []string{"--posture-interval", "10ms"}, wantErr: "invalid --posture-interval"},
		{name: "zero", args: []string{"--posture-interval", "0"}, wantErr: "invalid --posture-interval"},
		{name: "too long", args: []string{"--posture-interval", "2h"}, wantErr: "invalid --posture-interval"},
		{name: "not a duration", args: []string{"--posture-interval", "often"}, wantErr: "invalid --posture-interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseArgs(tt.args, &bytes.Buffer{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error = %v, want one line containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := cfg.postureInterval()
			if err != nil || got != tt.want {
				t.Fatalf("postureInterval = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestHelpNamesPostureInterval(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "-posture-interval duration") {
		t.Errorf("--help: exit %d, output %q", code, out.String())
	}
}
