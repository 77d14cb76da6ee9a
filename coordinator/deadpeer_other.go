//go:build !linux

package coordinator

import (
	"net"
	"time"
)

// setUserTimeout is Linux-only; elsewhere keepalive probes alone detect
// dead peers.
func setUserTimeout(*net.TCPConn, time.Duration) {}
