package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/wire"
)

func TestStatusShowsKeyExpiryAndPosture(t *testing.T) {
	now := time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC)
	on, off := true, false
	posture := &wire.Posture{OS: "linux", OSVersion: "12", Kernel: "6.1.0", AgentVersion: "0.4.0", Hostname: "web-1", Firewall: &on, DiskEncryption: &off}
	tests := []struct {
		name string
		st   localapi.Status
		want []string
		not  []string
	}{
		{"expired", localapi.Status{State: "connected", NetmapVersion: 3, KeyExpiry: now.Add(-time.Minute), KeyExpired: true},
			[]string{"node key expired 2026-11-22T12:59:00Z; ask an admin to extend it or re-enroll"}, nil},
		{"expires", localapi.Status{State: "connected", NetmapVersion: 3, KeyExpiry: now.Add(time.Hour)},
			[]string{"expires in 1h0m0s (2026-11-22T14:00:00Z)"}, []string{"node key expired"}},
		{"never", localapi.Status{State: "connected", NetmapVersion: 3}, []string{"does not expire"}, []string{"node key expired"}},
		{"posture", localapi.Status{State: "connected", Posture: posture},
			[]string{"posture:", "os linux 12, kernel 6.1.0, agent 0.4.0, hostname web-1, firewall yes, disk encryption no"}, nil},
		{"posture unknown", localapi.Status{State: "connected", Posture: &wire.Posture{OS: "linux", AgentVersion: "0.4.0"}},
			[]string{"firewall ?, disk encryption ?"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			printStatus(&b, tt.st, now)
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("status does not say %q:\n%s", w, b.String())
				}
			}
			for _, w := range tt.not {
				if strings.Contains(b.String(), w) {
					t.Errorf("status says %q:\n%s", w, b.String())
				}
			}
		})
	}
}
