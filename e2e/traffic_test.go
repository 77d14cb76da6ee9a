package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netns"
)

// echoPort is where every host's TCP and UDP echo servers listen.
const echoPort = 7001

// startEcho serves TCP and UDP echo on echoPort on every address of h
// until the test ends.
func startEcho(t *testing.T, h *netns.Host) {
	t.Helper()
	l, err := h.Listen("tcp", fmt.Sprintf(":%d", echoPort))
	if err != nil {
		t.Fatalf("echo server on %s: %v", h.Name, err)
	}
	pc, err := h.ListenPacket("udp", fmt.Sprintf(":%d", echoPort))
	if err != nil {
		l.Close()
		t.Fatalf("echo server on %s: %v", h.Name, err)
	}
	var wg sync.WaitGroup
	// Cleanup closes every accepted connection too: a stream whose tunnel
	// was cut (revocation, policy change) would otherwise block io.Copy,
	// and so the cleanup, forever.
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	t.Cleanup(func() {
		l.Close()
		pc.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
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
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

// tcpEcho sends payload from host from to the echo server at dst over
// TCP and checks it comes back.
func tcpEcho(ctx context.Context, from *netns.Host, dst netip.Addr, payload []byte) error {
	addr := netip.AddrPortFrom(dst, echoPort).String()
	c, err := from.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("tcp %s -> %s: %w", from.Name, addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		errc <- err
	}()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("tcp %s -> %s: reading echo: %w", from.Name, addr, err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("tcp %s -> %s: writing: %w", from.Name, addr, err)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("tcp %s -> %s: echo differs", from.Name, addr)
	}
	return nil
}

// udpEcho sends payload from host from to the echo server at dst over UDP
// until it comes back once (UDP may drop the first datagrams while a
// WireGuard handshake completes).
func udpEcho(ctx context.Context, from *netns.Host, dst netip.Addr, payload []byte) error {
	pc, err := from.ListenPacket("udp", ":0")
	if err != nil {
		return fmt.Errorf("udp %s -> %s: %w", from.Name, dst, err)
	}
	defer pc.Close()
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, echoPort))
	buf := make([]byte, len(payload)+1)
	for {
		if _, err := pc.WriteTo(payload, to); err != nil && ctx.Err() != nil {
			return fmt.Errorf("udp %s -> %s: %w", from.Name, dst, err)
		}
		pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := pc.ReadFrom(buf)
		if err == nil && bytes.Equal(buf[:n], payload) {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("udp %s -> %s: no echo: %w", from.Name, dst, errors.Join(ctx.Err(), err))
		}
	}
}

// ping sends one ICMP echo from host from to dst (IPv4 or IPv6).
func ping(ctx context.Context, from *netns.Host, dst netip.Addr, extra ...string) error {
	args := append([]string{"ping", "-n", "-c", "1", "-W", "2"}, extra...)
	_, err := from.Run(ctx, append(args, dst.String())...)
	return err
}

// counterStream is a TCP connection over which the client sends an
// increasing counter every interval and the server echoes it; it records
// the longest silence between echoes, to prove "no gap".
type counterStream struct {
	conn     net.Conn
	interval time.Duration

	mu       sync.Mutex // guards the fields below
	received uint64     // echoes received, in order
	last     time.Time  // when the last echo arrived
	maxGap   time.Duration
	err      error
	done     chan struct{}
}

// startCounterStream connects from -> to's echo server over addr and
// starts the exchange. Stop it with stop.
func startCounterStream(t *testing.T, from *netns.Host, dst netip.Addr, interval time.Duration) *counterStream {
	t.Helper()
	return startCounterStreamTo(t, from, netip.AddrPortFrom(dst, echoPort), interval)
}

// startCounterStreamTo is startCounterStream to an echo server at dst. The
// connection is retried for a few seconds (the first packet may wait for
// a WireGuard handshake or a netmap).
func startCounterStreamTo(t *testing.T, from *netns.Host, dst netip.AddrPort, interval time.Duration) *counterStream {
	t.Helper()
	var c net.Conn
	err := netns.Poll(10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		c, err = from.DialContext(ctx, "tcp", dst.String())
		return err
	})
	if err != nil {
		t.Fatalf("counter stream %s -> %s: %v", from.Name, dst, err)
	}
	s := &counterStream{conn: c, interval: interval, last: time.Now(), done: make(chan struct{})}
	go s.write()
	go s.read()
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *counterStream) write() {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	var buf [8]byte
	for n := uint64(1); ; n++ {
		binary.BigEndian.PutUint64(buf[:], n)
		if _, err := s.conn.Write(buf[:]); err != nil {
			s.fail(fmt.Errorf("writing counter %d: %w", n, err))
			return
		}
		select {
		case <-tick.C:
		case <-s.done:
			return
		}
	}
}

func (s *counterStream) read() {
	var buf [8]byte
	for {
		if _, err := io.ReadFull(s.conn, buf[:]); err != nil {
			s.fail(fmt.Errorf("reading echo: %w", err))
			return
		}
		now := time.Now()
		s.mu.Lock()
		want := s.received + 1
		if got := binary.BigEndian.Uint64(buf[:]); got != want {
			s.err = fmt.Errorf("echo %d, want %d", got, want)
		}
		s.received = want
		s.maxGap = max(s.maxGap, now.Sub(s.last))
		s.last = now
		s.mu.Unlock()
	}
}

func (s *counterStream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return // stopping; errors are expected
	default:
	}
	if s.err == nil {
		s.err = err
	}
}

// state returns the echoes received so far, the longest silence between
// two echoes (including the silence since the last one), and the first
// error.
func (s *counterStream) state() (uint64, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received, max(s.maxGap, time.Since(s.last)), s.err
}

// lastEcho returns when the last echo arrived (the start, before any).
func (s *counterStream) lastEcho() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// waitStalled waits until no echo has arrived for quiet, and returns the
// time of the last echo and the echoes received. It fails t if the
// stream still makes progress after deadline.
func (s *counterStream) waitStalled(t *testing.T, quiet, deadline time.Duration) (time.Time, uint64) {
	t.Helper()
	netns.Eventually(t, deadline, func() error {
		if since := time.Since(s.lastEcho()); since < quiet {
			got, _, _ := s.state()
			return fmt.Errorf("the stream still makes progress (%d echoes, the last %v ago)", got, since.Round(time.Millisecond))
		}
		return nil
	})
	got, _, _ := s.state()
	return s.lastEcho(), got
}

// waitFor waits until n more echoes than now have arrived, failing fast
// on a stream error.
func (s *counterStream) waitFor(t *testing.T, n uint64, deadline time.Duration) {
	t.Helper()
	start, _, _ := s.state()
	netns.Eventually(t, deadline, func() error {
		got, _, err := s.state()
		if err != nil {
			return netns.Permanent(err)
		}
		if got < start+n {
			return fmt.Errorf("stream carried %d of %d echoes", got-start, n)
		}
		return nil
	})
}

func (s *counterStream) stop() {
	s.mu.Lock()
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.mu.Unlock()
	s.conn.Close()
}

// oneLine reports whether s is a single non-empty line.
func oneLine(s string) bool {
	s = strings.TrimSuffix(s, "\n")
	return s != "" && !strings.Contains(s, "\n")
}
