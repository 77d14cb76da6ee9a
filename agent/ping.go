package agent

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// errPingTimeout is the reply error when no echo reply came in time.
var errPingTimeout = errors.New("timeout")

// icmpEcho is the PingFunc on raw ICMP sockets; the agent runs as root.
// Every raw socket sees every ICMP packet the host receives, so replies
// are matched on source, identifier and sequence.
func icmpEcho(ctx context.Context, dst netip.Addr, seq int, timeout time.Duration) (time.Duration, error) {
	if !dst.Is4() {
		return 0, fmt.Errorf("ping %s: only IPv4 is supported", dst)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return 0, fmt.Errorf("opening ICMP socket: %w", err)
	}
	defer c.Close()

	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.SetDeadline(deadline); err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()

	id := rand.IntN(0xffff) + 1
	data := make([]byte, 56)
	crand.Read(data)
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq & 0xffff, Data: data}}
	wb, err := msg.Marshal(nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := c.WriteTo(wb, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return 0, fmt.Errorf("sending echo request: %w", err)
	}
	rb := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(rb)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, errPingTimeout
			}
			return 0, fmt.Errorf("reading echo reply: %w", err)
		}
		rtt := time.Since(start)
		ipa, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		src, ok := netip.AddrFromSlice(ipa.IP)
		if !ok || src.Unmap() != dst {
			continue
		}
		rm, err := icmp.ParseMessage(1, rb[:n])
		if err != nil || rm.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := rm.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq&0xffff {
			return rtt, nil
		}
	}
}
