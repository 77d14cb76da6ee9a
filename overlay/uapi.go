package overlay

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/ipc"
)

// socketDir is where wireguard-go's ipc package puts UAPI sockets and where
// `wg` looks for them. It is shared by every network namespace of a
// machine, which is why interface names must be unique per machine.
const socketDir = "/var/run/wireguard"

// ErrSocketInUse is returned by New when another live process serves the
// UAPI socket of the requested interface name.
var ErrSocketInUse = errors.New("UAPI socket is served by another process")

func socketPath(name string) string { return filepath.Join(socketDir, name+".sock") }

// clearStaleSocket makes path free for a new UAPI socket: it removes a
// socket file nobody serves (left behind by a process killed with SIGKILL)
// and refuses with ErrSocketInUse if a live process accepts connections on
// it. A missing file is fine.
func clearStaleSocket(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: %w", path, ErrSocketInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOTSOCK) {
		return fmt.Errorf("probing %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	return nil
}

// listenUAPI creates and listens on the UAPI socket for interface name.
func listenUAPI(name string) (net.Listener, error) {
	if err := clearStaleSocket(socketPath(name)); err != nil {
		return nil, err
	}
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		return nil, fmt.Errorf("opening UAPI socket: %w", err)
	}
	defer f.Close() // UAPIListen works on its own copy of the descriptor
	l, err := ipc.UAPIListen(name, f)
	if err != nil {
		os.Remove(socketPath(name))
		return nil, fmt.Errorf("listening on UAPI socket: %w", err)
	}
	return l, nil
}
