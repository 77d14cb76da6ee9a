package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// Do runs f on an OS thread that is inside the host's network namespace.
// Sockets f opens stay in that namespace after Do returns, so the test
// process can talk to services in any host. f must not start goroutines
// that open sockets (they would run elsewhere).
func (h *Host) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// If switching back fails, the goroutine exits still locked and
		// the runtime discards the thread: it never serves other code.
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
		if err != nil {
			errc <- fmt.Errorf("opening own netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/var/run/netns", h.NS))
		if err != nil {
			errc <- fmt.Errorf("opening netns of %s: %w", h.Name, err)
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			errc <- fmt.Errorf("entering netns of %s: %w", h.Name, err)
			return
		}
		ferr := f()
		if err := setns(orig); err != nil {
			errc <- fmt.Errorf("leaving netns of %s: %w", h.Name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// DialContext connects from inside the host, like net.Dialer.DialContext;
// it fits http.Transport.DialContext.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen opens a TCP or unix listener inside the host.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := h.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacket opens a UDP socket inside the host.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := h.Do(func() error {
		var err error
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// WaitTCP waits until a TCP connection from inside the host to addr
// succeeds, and fails t if none does within deadline.
func (h *Host) WaitTCP(t TB, addr string, deadline time.Duration) {
	t.Helper()
	err := Poll(deadline, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := h.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("dialing %s from %s: %w", addr, h.Name, err)
		}
		return c.Close()
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
}

// setns moves the calling thread into the network namespace f refers to.
func setns(f *os.File) error {
	_, _, errno := syscall.RawSyscall(sysSetns, f.Fd(), syscall.CLONE_NEWNET, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
