package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestStateInMemoryFlag(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		mem     bool
		wantErr string
	}{
		{"default is disk", nil, false, ""},
		{"--state disk", []string{"--state", "disk"}, false, ""},
		{"--state mem", []string{"--state", "mem"}, true, ""},
		{"--state=mem with a state dir", []string{"--state=mem", "--state-dir", "/var/lib/latch"}, true, ""},
		{"--state-dir mem:", []string{"--state-dir", "mem:"}, true, ""},
		{"--state-dir mem (a directory named mem)", []string{"--state-dir", "mem"}, false, ""},
		{"bad kind", []string{"--state", "tmpfs"}, false, "invalid --state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseArgs(tt.args, &bytes.Buffer{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MemoryState() != tt.mem {
				t.Fatalf("MemoryState() = %v, want %v", cfg.MemoryState(), tt.mem)
			}
		})
	}
	var out bytes.Buffer
	parseArgs([]string{"--help"}, &out)
	if !strings.Contains(out.String(), "-state disk") || !strings.Contains(out.String(), "--state mem") {
		t.Errorf("--help does not explain --state:\n%s", out.String())
	}
}
