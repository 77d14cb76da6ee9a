package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestFlowIntervalFlag(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    time.Duration
		wantErr string
	}{
		{nil, DefaultFlowInterval, ""},
		{[]string{"--flow-interval", "10s"}, 10 * time.Second, ""},
		{[]string{"--flow-interval", "0"}, 0, ""},
		{[]string{"--flow-interval", "0s"}, 0, ""},
		{[]string{"--flow-interval", "10ms"}, 0, "invalid --flow-interval"},
		{[]string{"--flow-interval", "-5s"}, 0, "invalid --flow-interval"},
		{[]string{"--flow-interval", "soon"}, 0, "invalid --flow-interval"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cfg, err := parseArgs(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := cfg.flowInterval()
			if err != nil || got != tc.want {
				t.Errorf("flow interval %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
