package agent

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// TestICMPEchoOverLoopback exercises the real raw-socket pinger. It sends
// only to 127.0.0.1 and needs root (CAP_NET_RAW).
func TestICMPEchoOverLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("raw ICMP sockets need root")
	}
	lo := netip.MustParseAddr("127.0.0.1")
	for seq := 1; seq <= 3; seq++ {
		rtt, err := icmpEcho(context.Background(), lo, seq, 2*time.Second)
		if err != nil {
			t.Fatalf("echo %d: %v", seq, err)
		}
		if rtt <= 0 || rtt > 2*time.Second {
			t.Errorf("echo %d: rtt %v", seq, rtt)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := icmpEcho(ctx, lo, 9, time.Second); err == nil {
		t.Error("echo with a cancelled context succeeded")
	}
	if _, err := icmpEcho(context.Background(), netip.MustParseAddr("::1"), 1, time.Second); err == nil || !strings.Contains(err.Error(), "IPv4") {
		t.Errorf("IPv6 echo = %v, want an IPv4-only error", err)
	}
}
