package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "latchd.hujson")
	os.WriteFile(file, []byte(`{
		// HuJSON: comments and trailing commas
		"state_dir": "/srv/latch",
		"interface": "lt0",
		"port": 41641,
	}`), 0o600)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"state_dir": "/x", "bogus": 1}`), 0o600)

	tests := []struct {
		name    string
		args    []string
		want    Config
		wantErr string
	}{
		{name: "defaults", args: nil, want: DefaultConfig()},
		{name: "flags", args: []string{"--state-dir", "/tmp/s", "--socket", "/tmp/s.sock", "--interface", "lt1", "--port", "5000", "--log-level", "debug"},
			want: Config{StateDir: "/tmp/s", Socket: "/tmp/s.sock", Interface: "lt1", Port: 5000, LogLevel: "debug"}},
		{name: "file", args: []string{"--config", file},
			want: Config{StateDir: "/srv/latch", Socket: DefaultSocket, Interface: "lt0", Port: 41641, LogLevel: "info"}},
		{name: "flags override file", args: []string{"--port", "6000", "--config", file},
			want: Config{StateDir: "/srv/latch", Socket: DefaultSocket, Interface: "lt0", Port: 6000, LogLevel: "info"}},
		{name: "unknown field in file", args: []string{"--config", bad}, wantErr: `unknown field "bogus"`},
		{name: "missing file", args: []string{"--config", filepath.Join(dir, "none")}, wantErr: "reading config"},
		{name: "unknown flag", args: []string{"--bogus"}, wantErr: "flag provided but not defined: -bogus"},
		{name: "long interface", args: []string{"--interface", "a-very-long-name0"}, wantErr: "invalid --interface"},
		{name: "bad port", args: []string{"--port", "70000"}, wantErr: "invalid --port"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, wantErr: "invalid --log-level"},
		{name: "stray argument", args: []string{"up"}, wantErr: `unexpected argument "up"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseArgs(tt.args, &bytes.Buffer{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error = %v, want one line containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("config = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestHelpAndUsageExitCodes(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "-state-dir dir") {
		t.Errorf("--help: exit %d, output %q", code, out.String())
	}
	if _, err := parseArgs([]string{"-h"}, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h = %v", err)
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"--nope"}, &out, &errOut); code != 2 || strings.Count(errOut.String(), "\n") != 1 {
		t.Errorf("unknown flag: exit %d, stderr %q", code, errOut.String())
	}
}
