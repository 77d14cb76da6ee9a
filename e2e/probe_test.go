package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netns"
)

// probe is one kind of packet a test sends across the overlay: a TCP
// connection or a UDP datagram to a port, or an ICMP echo.
type probe struct {
	proto string // "tcp", "udp" or "icmp"
	port  uint16 // 0 for ICMP
}

func (p probe) String() string {
	if p.proto == "icmp" {
		return "icmp"
	}
	return fmt.Sprintf("%s/%d", p.proto, p.port)
}

var icmpProbe = probe{proto: "icmp"}

func tcpProbe(port uint16) probe { return probe{"tcp", port} }
func udpProbe(port uint16) probe { return probe{"udp", port} }

// outcome says how a probe ended.
type outcome int

const (
	// reached: an answer came back, so the packet was delivered.
	reached outcome = iota + 1
	// dropped: nothing came back in time, or there is no route or peer:
	// what a packet the policy refuses must look like.
	dropped
	// refused: the destination's kernel answered "port closed" (a TCP
	// reset or ICMP port unreachable), so the packet WAS delivered.
	// Every tested port has a listener, so this is a bug, never a drop.
	refused
	// broken: the probe failed for some other reason (the test or the
	// host is broken); it proves nothing about the policy.
	broken
)

func (o outcome) String() string {
	switch o {
	case reached:
		return "reached"
	case dropped:
		return "dropped"
	case refused:
		return "refused by the destination's kernel (the packet got through)"
	default:
		return "broken"
	}
}

// probeResult is an outcome and what showed it.
type probeResult struct {
	outcome outcome
	detail  string
}

func (r probeResult) String() string { return r.outcome.String() + ": " + r.detail }

// send runs one probe from host from to dst and classifies how it ended;
// it gives up after timeout.
func send(ctx context.Context, from *netns.Host, dst netip.Addr, p probe, timeout time.Duration) probeResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch p.proto {
	case "tcp":
		return sendTCP(ctx, from, dst, p.port, nil)
	case "udp":
		return sendUDP(ctx, from, dst, p.port)
	case "icmp":
		return sendPing(ctx, from, dst, timeout)
	}
	return probeResult{broken, "unknown protocol " + p.proto}
}

// sendTCP connects to dst:port (from local, when not nil) and exchanges a
// line with the echo server there.
func sendTCP(ctx context.Context, from *netns.Host, dst netip.Addr, port uint16, local *net.TCPAddr) probeResult {
	addr := netip.AddrPortFrom(dst, port).String()
	var c net.Conn
	err := from.Do(func() error {
		d := net.Dialer{LocalAddr: local}
		var err error
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		return classify(err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	msg := []byte("latch e2e probe\n")
	if _, err := c.Write(msg); err != nil {
		return probeResult{reached, "connected, then writing failed: " + err.Error()}
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		return probeResult{reached, fmt.Sprintf("connected, then the echo failed: %v", err)}
	}
	return probeResult{reached, "connected and echoed"}
}

// sendUDP sends datagrams to the echo server at dst:port every 250ms
// until one comes back or ctx ends. The socket is connected, so an ICMP
// port unreachable shows as ECONNREFUSED.
func sendUDP(ctx context.Context, from *netns.Host, dst netip.Addr, port uint16) probeResult {
	c, err := from.DialContext(ctx, "udp", netip.AddrPortFrom(dst, port).String())
	if err != nil {
		return classify(err)
	}
	defer c.Close()
	msg := []byte("latch e2e probe")
	buf := make([]byte, 64)
	for {
		if _, err := c.Write(msg); err != nil {
			return classify(err)
		}
		wait := time.Now().Add(250 * time.Millisecond)
		if dl, ok := ctx.Deadline(); ok && dl.Before(wait) {
			wait = dl
		}
		c.SetReadDeadline(wait)
		n, err := c.Read(buf)
		switch {
		case err == nil && bytes.Equal(buf[:n], msg):
			return probeResult{reached, "echoed"}
		case err == nil:
			return probeResult{reached, fmt.Sprintf("answered %q", buf[:n])}
		case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil:
			continue
		default:
			return classify(err)
		}
	}
}

// sendPing sends one ICMP (or ICMPv6) echo with ping(8).
func sendPing(ctx context.Context, from *netns.Host, dst netip.Addr, timeout time.Duration) probeResult {
	secs := fmt.Sprint(int(math.Ceil(timeout.Seconds())))
	// ping exits on its own after -W; ctx only guards against a hang.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout+5*time.Second)
	defer cancel()
	res, err := from.Run(ctx, "ping", "-n", "-c", "1", "-W", secs, dst.String())
	out := strings.TrimSpace(res.Stdout + " " + res.Stderr)
	switch {
	case err == nil:
		return probeResult{reached, "echo reply"}
	case strings.Contains(out, "bytes from"):
		return probeResult{reached, "a reply, yet ping failed: " + out}
	case res.Code == 1:
		return probeResult{dropped, "no reply within " + secs + "s"}
	case strings.Contains(out, "unreachable"):
		return probeResult{dropped, "no route: " + lastLine(out)}
	default:
		return probeResult{broken, fmt.Sprintf("ping exit %d: %s", res.Code, lastLine(out))}
	}
}

// classify turns a socket error into an outcome.
func classify(err error) probeResult {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return probeResult{dropped, "timeout"}
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return probeResult{dropped, "no route: " + err.Error()}
	case errors.Is(err, syscall.ECONNREFUSED):
		return probeResult{refused, err.Error()}
	default:
		return probeResult{broken, err.Error()}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// services are TCP and UDP echo servers on some ports of a host that
// remember every source address that reached them, so a test can prove
// that a refused packet never arrived.
type services struct {
	host *netns.Host

	mu   sync.Mutex // guards the fields below
	seen map[probe]map[netip.Addr]int
	// open are the accepted connections still open, closed at cleanup:
	// a connection whose client was cut off by the policy never ends.
	open   map[net.Conn]bool
	closed bool
}

// startServices serves TCP and UDP echo on each port on every address of
// h until the test ends.
func startServices(t *testing.T, h *netns.Host, ports ...uint16) *services {
	t.Helper()
	s := &services{host: h, seen: map[probe]map[netip.Addr]int{}, open: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	var closers []io.Closer
	t.Cleanup(func() {
		s.mu.Lock()
		s.closed = true
		for c := range s.open {
			closers = append(closers, c)
		}
		s.mu.Unlock()
		for _, c := range closers {
			c.Close()
		}
		wg.Wait()
	})
	for _, port := range ports {
		l, err := h.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			t.Fatalf("tcp/%d server on %s: %v", port, h.Name, err)
		}
		closers = append(closers, l)
		pc, err := h.ListenPacket("udp", fmt.Sprintf(":%d", port))
		if err != nil {
			t.Fatalf("udp/%d server on %s: %v", port, h.Name, err)
		}
		closers = append(closers, pc)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				s.record(tcpProbe(port), c.RemoteAddr())
				if !s.track(c) {
					c.Close()
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer s.untrack(c)
					_, _ = io.Copy(c, c)
				}()
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				s.record(udpProbe(port), from)
				_, _ = pc.WriteTo(buf[:n], from)
			}
		}()
	}
	return s
}

// track adds an accepted connection to those closed at cleanup; it
// returns false if the cleanup has begun.
func (s *services) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.open[c] = true
	return true
}

func (s *services) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, c)
}

func (s *services) record(p probe, from net.Addr) {
	ap, err := netip.ParseAddrPort(from.String())
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[p] == nil {
		s.seen[p] = map[netip.Addr]int{}
	}
	s.seen[p][ap.Addr().Unmap()]++
}

// count returns how many connections or datagrams of kind p came from src.
func (s *services) count(p probe, src netip.Addr) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[p][src]
}
