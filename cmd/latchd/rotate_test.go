package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/agent"
)

func TestKeyRotationFlag(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    time.Duration
		wantErr string
	}{
		{name: "default", want: agent.DefaultKeyRotation},
		{name: "hours", args: []string{"--key-rotation", "6h"}, want: 6 * time.Hour},
		{name: "never", args: []string{"--key-rotation", "0"}, want: -1},
		{name: "too short", args: []string{"--key-rotation", "24s"}, wantErr: "invalid --key-rotation"},
		{name: "negative", args: []string{"--key-rotation", "-1h"}, wantErr: "invalid --key-rotation"},
		{name: "not a duration", args: []string{"--key-rotation", "daily"}, wantErr: "invalid --key-rotation"},
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
			got, err := cfg.keyRotation()
			if err != nil || got != tt.want {
				t.Fatalf("keyRotation = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
