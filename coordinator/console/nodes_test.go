package console

import (
	"testing"

	"github.com/latchnet/latch/wire"
)

func TestNodesPageFiltersByPosture(t *testing.T) {
	yes := true
	linux := wire.NodeInfo{Posture: &wire.Posture{OS: "linux", AgentVersion: "0.4.0", Firewall: &yes}}
	bare := wire.NodeInfo{}
	tests := []struct {
		filter     string
		linux, old bool
	}{
		{"", true, true},
		{"os=linux", true, false},
		{"os == linux", true, false},
		{"os=darwin", false, false},
		{"os=linux, firewall=true", true, false},
		{"os=linux,firewall=false", false, false},
		{"firewall", true, false},
		{"disk_encryption", false, false},
		{" , ", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			if got := nodeMatches(linux, "", "", "", tt.filter); got != tt.linux {
				t.Errorf("linux node: %v, want %v", got, tt.linux)
			}
			if got := nodeMatches(bare, "", "", "", tt.filter); got != tt.old {
				t.Errorf("node without posture: %v, want %v", got, tt.old)
			}
		})
	}
}
