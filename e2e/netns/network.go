package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Prefix starts the name of every namespace and work directory the harness
// creates: Prefix + "<pid>-<rand>".
const Prefix = "latch-e2e-"

// MTU is the link MTU of every underlay link.
const MTU = 1400

// Underlay is the prefix the hosts' eth0 addresses come from. It is a
// benchmarking range (RFC 2544) that exists only inside our namespaces.
var Underlay = netip.MustParsePrefix("198.18.0.0/24")

// setupTimeout bounds each ip(8) call made while building a network.
const setupTimeout = 30 * time.Second

// Check reports why the harness cannot run here (not root, no ip(8)), or
// nil if it can.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("e2e needs root (network namespaces, veth, TUN); run as root, e.g. via make test or .ci/run")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("e2e needs ip(8) from iproute2 (run scripts/install-deps)")
	}
	return nil
}

// Network is an "internet" namespace with a bridge and the hosts attached
// to it. Create it with NewNetwork.
type Network struct {
	// ID is Prefix + "<pid>-<rand>"; every namespace of this network and
	// its work directory are named after it.
	ID string
	// Dir is the work directory (short, so unix socket paths fit): process
	// logs, state directories, sockets and captures live under it. It is
	// removed at cleanup.
	Dir string

	t    TB
	inet string // name of the internet namespace

	mu    sync.Mutex // guards the fields below
	hosts []*Host
	next  int // last host number handed out
}

// NewNetwork creates the internet namespace with its bridge and registers
// the teardown of everything the network will hold with t.Cleanup.
func NewNetwork(t TB) *Network {
	t.Helper()
	if err := Check(); err != nil {
		t.Fatalf("netns: %v", err)
	}
	id := fmt.Sprintf("%s%d-%s", Prefix, os.Getpid(), randHex(2))
	n := &Network{ID: id, t: t, inet: id + "-inet", Dir: filepath.Join(os.TempDir(), id)}
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		t.Fatalf("netns: creating work dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(n.Dir); err != nil {
			t.Errorf("netns: removing work dir: %v", err)
		}
	})
	t.Cleanup(func() { n.deleteNS(n.inet) })
	err := ipBatch(
		[]string{"netns", "add", n.inet},
		[]string{"-n", n.inet, "link", "set", "lo", "up"},
		[]string{"netns", "exec", n.inet, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"},
		// No multicast on the bridge: it would send IGMP reports that
		// clutter the hosts' captures.
		[]string{"-n", n.inet, "link", "add", "br0", "mtu", fmt.Sprint(MTU), "type", "bridge", "mcast_snooping", "0"},
		[]string{"-n", n.inet, "link", "set", "br0", "multicast", "off", "up"},
	)
	if err != nil {
		t.Fatalf("netns: creating internet namespace: %v", err)
	}
	return n
}

// Host is a network namespace attached to the Network's bridge.
type Host struct {
	// Name is the short name the test gave ("coord", "a").
	Name string
	// NS is the namespace name: Network.ID + "-" + Name.
	NS string
	// IP is the address of eth0, in Underlay.
	IP netip.Addr
	// Dir is this host's work directory, under Network.Dir.
	Dir string

	net *Network

	mu     sync.Mutex // guards ifaces
	ifaces []string   // WireGuard interface names handed out by NewIfName
}

// AddHost creates a host namespace: lo up, eth0 a veth into the bridge with
// the next underlay address and MTU 1400, IPv6 off on eth0 (the underlay is
// IPv4, and this keeps captures free of neighbour discovery).
func (n *Network) AddHost(name string) *Host {
	n.t.Helper()
	if !regexp.MustCompile(`^[a-z0-9]{1,12}$`).MatchString(name) {
		n.t.Fatalf("netns: host name %q: want 1-12 lowercase letters or digits", name)
	}
	n.mu.Lock()
	n.next++
	num := n.next
	n.mu.Unlock()
	if num > 250 {
		n.t.Fatalf("netns: too many hosts")
	}
	h := &Host{
		Name: name,
		NS:   n.ID + "-" + name,
		IP:   hostAddr(num),
		Dir:  filepath.Join(n.Dir, name),
		net:  n,
	}
	if err := os.MkdirAll(h.Dir, 0o700); err != nil {
		n.t.Fatalf("netns: creating host dir: %v", err)
	}
	n.t.Cleanup(func() { n.deleteNS(h.NS) })
	n.t.Cleanup(h.removeSockets)
	port := fmt.Sprintf("h%d", num)
	err := ipBatch(
		[]string{"netns", "add", h.NS},
		[]string{"-n", h.NS, "link", "set", "lo", "up"},
		[]string{"-n", n.inet, "link", "add", port, "mtu", fmt.Sprint(MTU), "type", "veth", "peer", "name", "eth0", "mtu", fmt.Sprint(MTU), "netns", h.NS},
		[]string{"-n", n.inet, "link", "set", port, "master", "br0", "up"},
		[]string{"netns", "exec", h.NS, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"},
		[]string{"-n", h.NS, "addr", "add", netip.PrefixFrom(h.IP, Underlay.Bits()).String(), "dev", "eth0"},
		[]string{"-n", h.NS, "link", "set", "eth0", "up"},
	)
	if err != nil {
		n.t.Fatalf("netns: creating host %s: %v", name, err)
	}
	n.mu.Lock()
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()
	return h
}

// Hosts returns the hosts in the order they were added.
func (n *Network) Hosts() []*Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Host(nil), n.hosts...)
}

// InternetNS is the name of the namespace that holds the bridge; captures
// there see every host's traffic on its port hN (N = host number).
func (n *Network) InternetNS() string { return n.inet }

func (n *Network) deleteNS(name string) {
	if err := deleteNamespace(name); err != nil {
		n.t.Errorf("netns: %v", err)
	}
}

// NewIfName returns a WireGuard interface name unique on this machine
// ("lt" + 6 hex digits), since /var/run/wireguard/<name>.sock is shared by
// every namespace. The socket is removed when the host is torn down.
func (h *Host) NewIfName() string {
	for {
		name := "lt" + randHex(3)
		if _, err := os.Stat(uapiSocket(name)); err == nil {
			continue
		}
		h.mu.Lock()
		h.ifaces = append(h.ifaces, name)
		h.mu.Unlock()
		// Recorded so that Sweep can remove the socket if this run dies.
		f, err := os.OpenFile(filepath.Join(h.net.Dir, "ifaces"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			fmt.Fprintln(f, name)
			f.Close()
		}
		return name
	}
}

func (h *Host) removeSockets() {
	h.mu.Lock()
	names := append([]string(nil), h.ifaces...)
	h.mu.Unlock()
	for _, name := range names {
		if err := os.Remove(uapiSocket(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			h.net.t.Errorf("netns: removing UAPI socket: %v", err)
		}
	}
}

// String returns the host's name and underlay address, for messages.
func (h *Host) String() string { return fmt.Sprintf("%s(%s)", h.Name, h.IP) }

// hostAddr returns the num'th address of Underlay.
func hostAddr(num int) netip.Addr {
	a := Underlay.Addr().As4()
	a[3] = byte(num)
	return netip.AddrFrom4(a)
}

func uapiSocket(ifname string) string { return filepath.Join("/var/run/wireguard", ifname+".sock") }

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

// ipBatch runs ip(8) once per argument list, stopping at the first error.
func ipBatch(cmds ...[]string) error {
	for _, args := range cmds {
		if _, err := runIP(args...); err != nil {
			return err
		}
	}
	return nil
}

// runIP runs ip(8) and returns its output.
func runIP(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// deleteNamespace removes a namespace if it exists. Processes still inside
// keep it alive in the kernel, so callers stop them first.
func deleteNamespace(name string) error {
	if _, err := os.Stat(filepath.Join("/var/run/netns", name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := ipBatch([]string{"netns", "del", name}); err != nil {
		return fmt.Errorf("deleting namespace: %w", err)
	}
	return nil
}
