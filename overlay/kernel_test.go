package overlay

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// Tests in this file use the real kernel: network namespaces joined by a
// veth pair, TUN interfaces, wireguard-go and netlink. They need root.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces, TUN interfaces and WireGuard sockets")
	}
	for _, bin := range []string{"ip", "ping", "wg"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("skipping: %s not installed (iproute2, iputils-ping, wireguard-tools)", bin)
		}
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// uniqueIface returns an interface name unique on this machine, since the
// UAPI socket directory is shared by every namespace.
func uniqueIface() string { return "lt" + randHex(3) }

// sh runs a command and returns its combined output.
func sh(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func mustSh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := sh(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// newNSPair creates two namespaces joined by a veth pair (eth0 in each),
// MTU 1400, underlay addresses 198.18.0.1 and 198.18.0.2. They are removed
// when the test ends, whatever happens.
func newNSPair(t *testing.T) (a, b string) {
	t.Helper()
	base := fmt.Sprintf("latch-ovl-%d-%s", os.Getpid(), randHex(2))
	a, b = base+"-a", base+"-b"
	for _, ns := range []string{a, b} {
		mustSh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() {
			if _, err := sh("ip", "netns", "del", ns); err != nil {
				t.Errorf("removing namespace: %v", err)
			}
		})
	}
	mustSh(t, "ip", "link", "add", "eth0", "netns", a, "type", "veth", "peer", "name", "eth0", "netns", b)
	for i, ns := range []string{a, b} {
		mustSh(t, "ip", "-n", ns, "link", "set", "lo", "up")
		mustSh(t, "ip", "-n", ns, "link", "set", "eth0", "mtu", "1400", "up")
		mustSh(t, "ip", "-n", ns, "addr", "add", fmt.Sprintf("198.18.0.%d/24", i+1), "dev", "eth0")
	}
	return a, b
}

// helper is an Engine in its own process inside a namespace.
type helper struct {
	t      *testing.T
	ns     string
	cmd    *exec.Cmd
	enc    *json.Encoder
	out    *bufio.Scanner
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startHelper(t *testing.T, ns string) *helper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &helper{t: t, ns: ns, stderr: &syncBuffer{}, done: make(chan struct{})}
	h.cmd = exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^$")
	h.cmd.Env = append(os.Environ(), helperEnv+"=1")
	h.cmd.Stderr = h.stderr
	stdin, err := h.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		h.cmd.Wait()
		close(h.done)
	}()
	h.enc = json.NewEncoder(stdin)
	h.out = bufio.NewScanner(stdout)
	h.out.Buffer(make([]byte, 4<<20), 4<<20)
	t.Cleanup(func() {
		h.enc.Encode(helperReq{Op: "exit"})
		stdin.Close()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			h.kill()
		}
		if t.Failed() || os.Getenv("LATCH_TEST_HELPER_LOGS") != "" {
			t.Logf("helper in %s logged:\n%s", ns, h.stderr.String())
		}
	})
	return h
}

// kill ends the helper with SIGKILL, as a crash would, and waits for it.
func (h *helper) kill() {
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
}

// call sends req and returns the answer, failing the test on a transport
// problem. A helper that does not answer within a minute is killed.
func (h *helper) call(req helperReq) helperResp {
	h.t.Helper()
	if err := h.enc.Encode(req); err != nil {
		h.t.Fatalf("helper %s: sending %s: %v", h.ns, req.Op, err)
	}
	got := make(chan bool, 1)
	go func() { got <- h.out.Scan() }()
	select {
	case ok := <-got:
		if !ok {
			h.t.Fatalf("helper %s: no answer to %s (exited?): %v\n%s", h.ns, req.Op, h.out.Err(), h.stderr.String())
		}
	case <-time.After(time.Minute):
		h.kill()
		h.t.Fatalf("helper %s: %s timed out\n%s", h.ns, req.Op, h.stderr.String())
	}
	var resp helperResp
	if err := json.Unmarshal(h.out.Bytes(), &resp); err != nil {
		h.t.Fatalf("helper %s: bad answer %q: %v", h.ns, h.out.Text(), err)
	}
	return resp
}

// must is call that fails the test if the operation failed.
func (h *helper) must(req helperReq) helperResp {
	h.t.Helper()
	resp := h.call(req)
	if resp.Err != "" {
		h.t.Fatalf("helper %s: %s: %s", h.ns, req.Op, resp.Err)
	}
	return resp
}

func (h *helper) status() *Status {
	h.t.Helper()
	return h.must(helperReq{Op: "status"}).Status
}

func (h *helper) count(reason string) uint64 {
	h.t.Helper()
	return h.must(helperReq{Op: "counts"}).Counts[reason]
}

// eventually polls f until it succeeds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

func ping(ns string, args ...string) error {
	_, err := sh(append([]string{"ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1"}, args...)...)
	return err
}

func interimRule(srcs ...netip.Prefix) []wire.FilterRule {
	return []wire.FilterRule{{
		ID:        "interim-allow-peers",
		Sources:   srcs,
		Protocols: []wire.Proto{wire.ProtoTCP, wire.ProtoUDP, wire.ProtoICMP, wire.ProtoICMPv6},
		Ports:     []wire.PortRange{{First: 1, Last: 65535}},
	}}
}

func TestOverlayBetweenNamespaces(t *testing.T) {
	requireRoot(t)
	nsA, nsB := newNSPair(t)
	ifA, ifB := uniqueIface(), uniqueIface()
	for _, name := range []string{ifA, ifB} {
		t.Cleanup(func() { clearStaleSocket(socketPath(name)) })
	}
	a, b := startHelper(t, nsA), startHelper(t, nsB)

	// The MTU comes from the underlay route: 1400 - 60 for IPv4.
	for _, x := range []struct {
		h     *helper
		iface string
		peer  string
	}{{a, ifA, "198.18.0.2"}, {b, ifB, "198.18.0.1"}} {
		resp := x.h.must(helperReq{Op: "new", Iface: x.iface, UnderlayDst: netip.MustParseAddr(x.peer)})
		if resp.UnderlayMTU != 1400 || resp.MTU != 1340 {
			t.Fatalf("underlay MTU %d, overlay MTU %d; want 1400 and 1340", resp.UnderlayMTU, resp.MTU)
		}
	}

	kA, kB := testKey(t), testKey(t)
	pubA, pubB := wire.NodePublic(kA.PublicKey()), wire.NodePublic(kB.PublicKey())
	a4, a6 := pfx("100.64.0.1/32"), pfx("fd42:1:1::1/128")
	b4, b6 := pfx("100.64.0.2/32"), pfx("fd42:1:1::2/128")
	// spoof is an address B owns and WireGuard accepts from B (it is in
	// B's allowed IPs), but A's rules do not admit.
	spoof := pfx("100.64.0.99/32")
	routes := []netip.Prefix{pfx("100.64.0.0/10"), pfx("fd42:1:1::/48")}
	// A listens on a fixed port; B lets the device pick one, and A does
	// not know B's endpoint: B must reach A first.
	cfgA := Config{
		PrivateKey: kA, ListenPort: 51820, Addresses: []netip.Prefix{a4, a6}, Routes: routes,
		Peers: []Peer{{Key: pubB, AllowedIPs: []netip.Prefix{b4, b6, spoof}}},
		Rules: interimRule(b4, b6),
	}
	cfgB := Config{
		PrivateKey: kB, Addresses: []netip.Prefix{b4, b6, spoof}, Routes: routes,
		Peers: []Peer{{Key: pubA, AllowedIPs: []netip.Prefix{a4, a6}, Endpoint: netip.MustParseAddrPort("198.18.0.1:51820")}},
		Rules: interimRule(a4, a6),
	}
	a.must(helperReq{Op: "reconfig", Config: &cfgA})
	b.must(helperReq{Op: "reconfig", Config: &cfgB})
	portB := b.status().ListenPort
	if portB == 0 {
		t.Fatal("B reports listen port 0 after coming up with ListenPort 0")
	}
	endpointB := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), uint16(portB))

	t.Run("ping works both ways over IPv4 and IPv6", func(t *testing.T) {
		eventually(t, 15*time.Second, "ping B->A", func() error { return ping(nsB, "100.64.0.1") })
		eventually(t, 5*time.Second, "ping A->B", func() error { return ping(nsA, "100.64.0.2") })
		eventually(t, 5*time.Second, "ping6 A->B", func() error { return ping(nsA, "-6", "fd42:1:1::2") })
	})

	t.Run("picked listen port is kept across Reconfig", func(t *testing.T) {
		b.must(helperReq{Op: "reconfig", Config: &cfgB})
		if got := b.status().ListenPort; got != portB {
			t.Errorf("listen port %d after Reconfig, was %d", got, portB)
		}
	})

	t.Run("underlay MTU honours a route MTU and refuses loopback", func(t *testing.T) {
		mustSh(t, "ip", "-n", nsA, "route", "add", "198.18.7.0/24", "dev", "eth0", "mtu", "1300")
		if got := a.must(helperReq{Op: "underlay-mtu", UnderlayDst: netip.MustParseAddr("198.18.7.9")}).UnderlayMTU; got != 1300 {
			t.Errorf("underlay MTU via a route with mtu 1300: %d", got)
		}
		resp := a.call(helperReq{Op: "underlay-mtu", UnderlayDst: netip.MustParseAddr("127.0.0.1")})
		if !strings.Contains(resp.Err, ErrLoopbackRoute.Error()) {
			t.Errorf("underlay MTU towards loopback: %q, want %q", resp.Err, ErrLoopbackRoute)
		}
	})

	t.Run("bulk TCP crosses the overlay intact", func(t *testing.T) {
		b.must(helperReq{Op: "listen", Addr: "100.64.0.2:7000"})
		a.must(helperReq{Op: "dial", Addr: "100.64.0.2:7000", Bytes: 8 << 20})
		a.must(helperReq{Op: "listen", Addr: "[fd42:1:1::1]:7001"})
		b.must(helperReq{Op: "dial", Addr: "[fd42:1:1::1]:7001", Bytes: 4 << 20})
	})

	t.Run("interface has the derived MTU and keeps TUN offloads", func(t *testing.T) {
		out := mustSh(t, "ip", "netns", "exec", nsA, "ip", "-d", "link", "show", ifA)
		if !strings.Contains(out, "mtu 1340 ") {
			t.Errorf("interface MTU is not 1340:\n%s", out)
		}
		if !strings.Contains(out, "vnet_hdr on") {
			t.Errorf("TUN without vnet_hdr (offloads lost):\n%s", out)
		}
	})

	t.Run("wg show lists the peer", func(t *testing.T) {
		out := mustSh(t, "ip", "netns", "exec", nsA, "wg", "show", ifA)
		for _, want := range []string{"peer: " + pubB.String(), "listening port: 51820", "endpoint: " + endpointB.String(), "latest handshake"} {
			if !strings.Contains(out, want) {
				t.Errorf("wg show lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("status reports handshake, traffic and port", func(t *testing.T) {
		st := a.status()
		if st.ListenPort != 51820 || st.PublicKey != pubA || st.MTU != 1340 || len(st.Peers) != 1 {
			t.Fatalf("status: %+v", st)
		}
		p := st.Peers[0]
		if p.Key != pubB || p.LastHandshake.IsZero() || p.RxBytes == 0 || p.TxBytes == 0 || p.Endpoint != endpointB {
			t.Errorf("peer status: %+v", p)
		}
	})

	t.Run("packet from a source the rules do not admit is dropped", func(t *testing.T) {
		before := a.count("drop-no-rule")
		if err := ping(nsB, "-I", "100.64.0.99", "100.64.0.1"); err == nil {
			t.Fatal("ping from a source outside A's rules got an answer")
		}
		if after := a.count("drop-no-rule"); after <= before {
			t.Errorf("drop-no-rule count %d -> %d, want it to grow", before, after)
		}
		if err := ping(nsB, "100.64.0.1"); err != nil {
			t.Errorf("allowed source stopped working: %v", err)
		}
	})

	t.Run("reconfig with another peer keeps existing sessions", func(t *testing.T) {
		hs := a.status().Peers[0].LastHandshake
		more := cfgA
		more.Peers = append([]Peer{}, cfgA.Peers...)
		more.Peers = append(more.Peers, Peer{Key: wire.NodePublic(testKey(t).PublicKey()), AllowedIPs: []netip.Prefix{pfx("100.64.0.3/32")}})
		a.must(helperReq{Op: "reconfig", Config: &more})
		a.must(helperReq{Op: "reconfig", Config: &more})
		st := a.status()
		if len(st.Peers) != 2 {
			t.Fatalf("%d peers after adding one, want 2", len(st.Peers))
		}
		for _, p := range st.Peers {
			if p.Key == pubB && !p.LastHandshake.Equal(hs) {
				t.Errorf("B's handshake changed from %v to %v: its session was reset", hs, p.LastHandshake)
			}
		}
		if err := ping(nsA, "100.64.0.2"); err != nil {
			t.Errorf("ping after adding a peer: %v", err)
		}
		a.must(helperReq{Op: "reconfig", Config: &cfgA})
		if n := len(a.status().Peers); n != 1 {
			t.Errorf("%d peers after removing one, want 1", n)
		}
	})

	t.Run("removed rules stop inbound but not this node's own flows", func(t *testing.T) {
		closed := cfgA
		closed.Rules = nil
		a.must(helperReq{Op: "reconfig", Config: &closed})
		before := a.count("drop-no-rule")
		if err := ping(nsB, "100.64.0.1"); err == nil {
			t.Error("B still reaches A after A's rules were removed")
		}
		if after := a.count("drop-no-rule"); after <= before {
			t.Errorf("drop-no-rule count %d -> %d, want it to grow", before, after)
		}
		if err := ping(nsA, "100.64.0.2"); err != nil {
			t.Errorf("A's own ping to B (replies admitted as established) failed: %v", err)
		}
		a.must(helperReq{Op: "reconfig", Config: &cfgA})
		if err := ping(nsB, "100.64.0.1"); err != nil {
			t.Errorf("B cannot reach A after the rules came back: %v", err)
		}
	})

	t.Run("close removes the interface and the socket", func(t *testing.T) {
		resp := a.must(helperReq{Op: "close"})
		if resp.Leaked != "" {
			t.Errorf("goroutines left after Close: %s", resp.Leaked)
		}
		if out, err := sh("ip", "netns", "exec", nsA, "ip", "link", "show", ifA); err == nil {
			t.Errorf("interface still exists after Close:\n%s", out)
		}
		if _, err := os.Lstat(socketPath(ifA)); err == nil {
			t.Errorf("socket %s still exists after Close", socketPath(ifA))
		}
	})

	t.Run("a socket left by a killed agent is replaced", func(t *testing.T) {
		b.kill()
		if _, err := os.Lstat(socketPath(ifB)); err != nil {
			t.Fatalf("expected a stale socket after SIGKILL: %v", err)
		}
		b2 := startHelper(t, nsB)
		b2.must(helperReq{Op: "new", Iface: ifB, UnderlayDst: netip.MustParseAddr("198.18.0.1")})
		b2.must(helperReq{Op: "reconfig", Config: &cfgB})

		t.Run("a socket served by a live agent is refused", func(t *testing.T) {
			other := startHelper(t, nsA)
			resp := other.call(helperReq{Op: "new", Iface: ifB, UnderlayDst: netip.MustParseAddr("198.18.0.2")})
			if !strings.Contains(resp.Err, ErrSocketInUse.Error()) {
				t.Errorf("New on a live agent's socket: %q, want %q", resp.Err, ErrSocketInUse)
			}
			if out, err := sh("ip", "netns", "exec", nsA, "ip", "link", "show", ifB); err == nil {
				t.Errorf("refused New still created an interface:\n%s", out)
			}
			if out, err := sh("ip", "netns", "exec", nsB, "wg", "show", ifB); err != nil || !strings.Contains(out, pubA.String()) {
				t.Errorf("the live agent was disturbed: %v\n%s", err, out)
			}
		})

		if resp := b2.must(helperReq{Op: "close"}); resp.Leaked != "" {
			t.Errorf("goroutines left after Close: %s", resp.Leaked)
		}
	})
}
