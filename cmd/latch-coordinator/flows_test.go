package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator"
)

func TestFlowRetentionFlagsAndConfigKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.hujson")
	os.WriteFile(path, []byte(`{"flow-retention": "2h", "flow-max-records": 5000}`), 0o600)
	for _, tc := range []struct {
		name      string
		args      []string
		retention time.Duration
		max       int
		wantErr   string
	}{
		{"defaults", nil, coordinator.DefaultFlowRetention, coordinator.DefaultFlowMaxRecords, ""},
		{"flags", []string{"--flow-retention", "72h", "--flow-max-records", "20000"}, 72 * time.Hour, 20000, ""},
		{"file", []string{"--config", path}, 2 * time.Hour, 5000, ""},
		{"flags win over file", []string{"--config", path, "--flow-max-records", "3000"}, 2 * time.Hour, 3000, ""},
		{"retention too short", []string{"--flow-retention", "1s"}, 0, 0, "flow retention"},
		{"too few records", []string{"--flow-max-records", "10"}, 0, 0, "flow max records"},
		{"not a number", []string{"--flow-max-records", "lots"}, 0, 0, "invalid value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := parseServe(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if opts.cfg.FlowRetention != tc.retention || opts.cfg.FlowMaxRecords != tc.max {
				t.Errorf("retention %v max %d, want %v and %d", opts.cfg.FlowRetention, opts.cfg.FlowMaxRecords, tc.retention, tc.max)
			}
		})
	}
}
