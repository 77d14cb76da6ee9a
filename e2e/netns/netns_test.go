package netns

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if Check() == nil {
		removed, err := Sweep()
		for _, r := range removed {
			fmt.Fprintf(os.Stderr, "netns: swept leftover %s\n", r)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "netns: sweep: %v\n", err)
		}
	}
	os.Exit(m.Run())
}

func requireHarness(t *testing.T) {
	t.Helper()
	if err := Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
}

func namespaces(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestHarnessHostsPingAcrossBridgeAndTeardownLeavesNothing(t *testing.T) {
	requireHarness(t)
	var (
		id, dir string
		pids    []int
		sockets []string
	)
	t.Run("network", func(t *testing.T) {
		n := NewNetwork(t)
		id, dir = n.ID, n.Dir
		a, b := n.AddHost("a"), n.AddHost("b")
		if a.IP == b.IP || !Underlay.Contains(a.IP) || !Underlay.Contains(b.IP) {
			t.Fatalf("bad underlay addresses %v, %v", a.IP, b.IP)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, pair := range [][2]*Host{{a, b}, {b, a}} {
			a.MustRun(t, ctx, "true")
			out := pair[0].MustRun(t, ctx, "ping", "-c", "1", "-W", "5", pair[1].IP.String())
			if !strings.Contains(out, "1 received") {
				t.Fatalf("ping %v -> %v: %s", pair[0], pair[1], out)
			}
		}
		link := a.MustRun(t, ctx, "ip", "link", "show", "eth0")
		if !strings.Contains(link, fmt.Sprintf("mtu %d", MTU)) {
			t.Errorf("eth0 of a: want mtu %d: %s", MTU, link)
		}
		// A Run's failure carries the exit code and stderr.
		res, err := a.Run(ctx, "sh", "-c", "echo oops >&2; exit 3")
		if err == nil || res.Code != 3 || !strings.Contains(err.Error(), "oops") {
			t.Errorf("failing command: got code %d, err %v", res.Code, err)
		}
		// Processes and interface sockets must be gone after cleanup.
		for _, h := range []*Host{a, b} {
			p := h.Start(t, "sleep", "600")
			pids = append(pids, p.PID)
			name := h.NewIfName()
			if len(name) > 15 || !strings.HasPrefix(name, "lt") {
				t.Errorf("interface name %q", name)
			}
			sock := uapiSocket(name)
			if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(sock, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			sockets = append(sockets, sock)
		}
		if a.NewIfName() == b.NewIfName() {
			t.Error("interface names collide")
		}
	})
	for _, ns := range namespaces(t) {
		if strings.HasPrefix(ns, id) {
			t.Errorf("namespace %s left behind", ns)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("work dir %s left behind (%v)", dir, err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d still running", pid)
		}
	}
	for _, s := range sockets {
		if _, err := os.Stat(s); !os.IsNotExist(err) {
			t.Errorf("socket %s left behind", s)
		}
	}
}

func TestHarnessSocketsOpenInsideHosts(t *testing.T) {
	requireHarness(t)
	n := NewNetwork(t)
	a, b := n.AddHost("a"), n.AddHost("b")
	l, err := b.Listen("tcp", netip.AddrPortFrom(b.IP, 7000).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	a.WaitTCP(t, netip.AddrPortFrom(b.IP, 7000).String(), 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.DialContext(ctx, "tcp", netip.AddrPortFrom(b.IP, 7000).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != a.IP {
		t.Errorf("connection from %v, want from a's address %v", got, a.IP)
	}
	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello\n" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	// Do runs inside the host's namespace, and the rest of the test
	// process stays outside it. (Never probe host addresses from the root
	// namespace: they route to the real network there.)
	hostIno := nsInode(t, filepath.Join("/var/run/netns", a.NS))
	var inside uint64
	if err := a.Do(func() error {
		inside = nsInode(t, fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inside != hostIno {
		t.Errorf("Do ran in netns %d, want host's %d", inside, hostIno)
	}
	if own := nsInode(t, "/proc/self/ns/net"); own == hostIno {
		t.Error("test process left in the host's namespace")
	}
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestHarnessCaptureSeesCleartextMarker(t *testing.T) {
	requireHarness(t)
	n := NewNetwork(t)
	a, b := n.AddHost("a"), n.AddHost("b")
	capture := a.StartCapture(t, "eth0")
	marker := []byte("latch-capture-marker-" + randHex(4))
	c, err := a.ListenPacket("udp4", netip.AddrPortFrom(a.IP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.IP, 9999))
	for range 3 {
		if _, err := c.WriteTo(marker, dst); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until tcpdump has written the packets, then stop it.
	Eventually(t, 10*time.Second, func() error {
		b, err := os.ReadFile(capture.Path())
		if err != nil || !bytes.Contains(b, marker) {
			return fmt.Errorf("marker not captured yet (%v)", err)
		}
		return nil
	})
	pcap, err := capture.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if !ContainsMarker(pcap, marker) {
		t.Fatal("capture lacks the cleartext marker")
	}
	pkts, err := ParsePcap(pcap)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, p := range pkts {
		if p.Proto == 17 && p.Src == a.IP && p.Dst == b.IP && p.DstPort == 9999 && bytes.Contains(p.Payload, marker) {
			found = true
		}
	}
	if !found {
		t.Errorf("no UDP packet %v -> %v:9999 among %d packets", a.IP, b.IP, len(pkts))
	}
}

func TestHarnessStopKillsProcessThatIgnoresTERM(t *testing.T) {
	requireHarness(t)
	n := NewNetwork(t)
	a := n.AddHost("a")
	p := a.Start(t, "sh", "-c", `trap "" TERM; echo ready; while :; do sleep 1; done`)
	if err := p.WaitLog("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if rss, err := p.RSS(); err != nil || rss <= 0 {
		t.Errorf("RSS = %d, %v", rss, err)
	}
	start := time.Now()
	err := p.StopWithin(200 * time.Millisecond)
	if err == nil || !p.Exited() {
		t.Fatalf("Stop: err %v, exited %v; want killed", err, p.Exited())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stop took %v", d)
	}
}

func TestSweepRemovesOnlyDeadRunsLeftovers(t *testing.T) {
	requireHarness(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.ProcessState.Pid()
	if syscall.Kill(deadPID, 0) == nil {
		t.Skip("PID was reused at once")
	}
	tag := randHex(3)
	deadNS := fmt.Sprintf("%s%d-%s-x", Prefix, deadPID, tag)
	liveNS := fmt.Sprintf("%s%d-%s-x", Prefix, os.Getpid(), tag)
	otherNS := "latch-e2e-other-" + tag
	deadDir := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d-%s", Prefix, deadPID, tag))
	for _, ns := range []string{deadNS, liveNS, otherNS} {
		if err := ipBatch([]string{"netns", "add", ns}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = deleteNamespace(ns) })
	}
	if err := os.MkdirAll(deadDir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(deadDir) })
	if _, err := Sweep(); err != nil {
		t.Fatal(err)
	}
	left := strings.Join(namespaces(t), " ")
	if strings.Contains(left, deadNS) {
		t.Errorf("dead run's namespace %s not swept", deadNS)
	}
	for _, ns := range []string{liveNS, otherNS} {
		if !strings.Contains(left, ns) {
			t.Errorf("sweep removed %s, which is not a dead run's", ns)
		}
	}
	if _, err := os.Stat(deadDir); !os.IsNotExist(err) {
		t.Errorf("dead run's dir %s not swept", deadDir)
	}
}

func TestSessionRunsCleanupsLastFirstOnce(t *testing.T) {
	var out bytes.Buffer
	s := NewSession(&out)
	var order []int
	for i := range 3 {
		s.Cleanup(func() { order = append(order, i) })
	}
	s.Close()
	s.Close()
	if fmt.Sprint(order) != "[2 1 0]" {
		t.Errorf("cleanup order %v, want [2 1 0]", order)
	}
	if s.Failed() {
		t.Error("failed without Errorf")
	}
	s.Errorf("boom %d", 1)
	if !s.Failed() || !strings.Contains(out.String(), "boom 1") {
		t.Errorf("Errorf: failed %v, out %q", s.Failed(), out.String())
	}
}

func TestParsePcap(t *testing.T) {
	src, dst := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")
	udp := ethernetIPv4(17, src, dst, []byte{0xca, 0x6c, 0xca, 0x6d, 0, 12, 0, 0, 'h', 'i', '!', '!'})
	arp := append(make([]byte, 12), 0x08, 0x06, 0, 1)
	tests := []struct {
		name  string
		file  []byte
		want  []string
		isErr bool
	}{
		{"udp and arp", pcapFile(udp, arp), []string{"UDP 198.18.0.2:51820 > 198.18.0.3:51821 len 46", "ethertype 0x0806 len 16"}, false},
		{"raw ip from a tun", pcapFileLink(101, udp[14:]), []string{"UDP 198.18.0.2:51820 > 198.18.0.3:51821 len 32"}, false},
		{"raw ip dlt 12", pcapFileLink(12, udp[14:]), []string{"UDP 198.18.0.2:51820 > 198.18.0.3:51821 len 32"}, false},
		{"unknown link type", pcapFileLink(113, udp), nil, true},
		{"empty", pcapFile(), nil, false},
		{"truncated record kept out", pcapFile(udp)[:40], nil, false},
		{"not pcap", []byte("definitely not a pcap file"), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkts, err := ParsePcap(tt.file)
			if (err != nil) != tt.isErr {
				t.Fatalf("err = %v, want error %v", err, tt.isErr)
			}
			var got []string
			for _, p := range pkts {
				got = append(got, p.String())
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func ethernetIPv4(proto byte, src, dst netip.Addr, l4 []byte) []byte {
	f := append(make([]byte, 12), 0x08, 0x00)
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	ip[8], ip[9] = 64, proto
	copy(ip[12:], src.AsSlice())
	copy(ip[16:], dst.AsSlice())
	return append(append(f, ip...), l4...)
}

func pcapFile(frames ...[]byte) []byte { return pcapFileLink(1, frames...) }

func pcapFileLink(linkType uint32, frames ...[]byte) []byte {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint32(b, 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(b[4:], 2)
	binary.LittleEndian.PutUint16(b[6:], 4)
	binary.LittleEndian.PutUint32(b[16:], 65535)
	binary.LittleEndian.PutUint32(b[20:], linkType)
	for _, f := range frames {
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(f)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(f)))
		b = append(append(b, rec...), f...)
	}
	return b
}
