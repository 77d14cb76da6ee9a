package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
)

// overlayV4 is the range every overlay IPv4 address comes from.
var overlayV4 = netip.MustParsePrefix("100.64.0.0/10")

// TestMeshOfAgentsOverRealNamespaces runs a coordinator and three agents
// on four hosts, under a policy that lets every node reach every other
// (cluster.MeshPolicy), and proves, in order: distinct overlay addresses, TCP, UDP
// and ICMP between every pair, nothing but WireGuard on the underlay,
// `wg show` peers, a coordinator outage that does not interrupt an
// established stream, reconnection after a restart, and a fourth node
// enrolled afterwards. It logs the time from `latch up` to the first
// packet and the agents' idle memory.
func TestMeshOfAgentsOverRealNamespaces(t *testing.T) {
	bins := setup(t)
	n := netns.NewNetwork(t)
	coordHost := n.AddHost("coord")
	hosts := []*netns.Host{n.AddHost("a"), n.AddHost("b"), n.AddHost("c")}
	for _, h := range hosts {
		startEcho(t, h)
	}
	coord := cluster.StartCoordinator(t, bins, coordHost)
	// Without a policy nodes see no peers: let the mesh's hosts reach
	// each other on everything, so this test proves the data plane.
	coord.SetPolicy(t, cluster.MeshPolicy)
	key := coord.CreateKey(t, "--reusable", "--tags", cluster.MeshTag, "--description", "e2e mesh")
	var agents []*cluster.Agent
	for _, h := range hosts {
		agents = append(agents, cluster.StartAgent(t, bins, h, coord))
	}
	agents[0].Up(t, key.Key)
	agents[1].Up(t, key.Key)
	measureUpToFirstPacket(t, agents[2], key.Key, agents[0])
	for _, a := range agents {
		a.WaitConnected(t, len(agents)-1, 30*time.Second)
	}

	t.Run("EnrolledNodesGetDistinctOverlayAddresses", func(t *testing.T) {
		testDistinctAddresses(t, coord, agents)
	})
	t.Run("TCPUDPAndICMPWorkBetweenEveryPair", func(t *testing.T) {
		testEveryPair(t, agents, agents)
	})
	t.Run("UnderlayCarriesOnlyWireGuardUDP", func(t *testing.T) {
		testUnderlayCapture(t, coord, agents)
	})
	t.Run("WgShowListsTheOtherNodesKeys", func(t *testing.T) {
		testWgShow(t, coord, agents)
	})
	t.Run("CoordinatorOutageKeepsEstablishedStreamAndAgentsReconnect", func(t *testing.T) {
		testCoordinatorOutage(t, coord, agents)
	})
	var d *cluster.Agent
	t.Run("NodeEnrolledAfterRestartIsReachable", func(t *testing.T) {
		d = cluster.StartAgent(t, bins, n.AddHost("d"), coord)
		startEcho(t, d.Host)
		oneOff := coord.CreateKey(t, "--tags", cluster.MeshTag, "--description", "fourth node")
		d.Up(t, oneOff.Key)
		all := append(slices.Clone(agents), d)
		for _, a := range all {
			a.WaitConnected(t, len(all)-1, 60*time.Second)
		}
		testEveryPair(t, []*cluster.Agent{d}, all)
		testEveryPair(t, agents, []*cluster.Agent{d})

		// Every agent now has three peers and nothing to do.
		var maxRSS int64
		for _, a := range all {
			rss, err := a.Proc().RSS()
			if err != nil {
				t.Fatal(err)
			}
			maxRSS = max(maxRSS, rss)
			metric(t, "agent_idle_rss_kib", rss, "host="+a.Host.Name, "peers=3")
		}
		metric(t, "agent_idle_rss_kib_max", maxRSS, "peers=3")
	})
	t.Run("DownRemovesInterfaceAndUpWithoutKeyReconnects", func(t *testing.T) {
		testDownUp(t, agents[2], agents[0])
	})
	t.Run("RestartedAgentKeepsItsIdentity", func(t *testing.T) {
		testAgentRestart(t, agents[1], agents[0])
	})
	t.Run("AgentShutdownRemovesInterfaceAndSocket", func(t *testing.T) {
		if d == nil {
			t.Skip("no fourth agent")
		}
		testAgentShutdown(t, d)
	})
}

// testDownUp takes agent down and up again (no key) and checks the
// interface goes and comes back, reachable from peer.
func testDownUp(t *testing.T, agent, peer *cluster.Agent) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ip := agent.OverlayIPv4(t)
	if res, err := agent.CLI(ctx, "down"); err != nil {
		t.Fatalf("latch down: %v (%s)", err, res.Stderr)
	}
	if _, err := agent.Host.Run(ctx, "ip", "link", "show", agent.Iface); err == nil {
		t.Errorf("interface %s still exists after latch down", agent.Iface)
	}
	st, err := agent.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "stopped" {
		t.Errorf("state after latch down = %q, want stopped", st.State)
	}
	if res, err := agent.CLI(ctx, "up"); err != nil {
		t.Fatalf("latch up without a key after latch down: %v (%s)", err, res.Stderr)
	}
	st = agent.WaitConnected(t, len(st.Peers), 60*time.Second)
	if got := agent.OverlayIPv4(t); got != ip {
		t.Errorf("overlay address changed from %v to %v across down/up", ip, got)
	}
	netns.Eventually(t, 20*time.Second, func() error { return ping(ctx, peer.Host, ip) })
}

// testAgentRestart stops latchd and starts it again on the same state: it
// must come back as the same node, on its own, reachable from peer.
func testAgentRestart(t *testing.T, agent, peer *cluster.Agent) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	before, err := agent.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Stop(); err != nil {
		t.Fatalf("latchd did not stop on SIGTERM: %v", err)
	}
	agent.Start(t)
	after := agent.WaitConnected(t, len(before.Peers), 60*time.Second)
	if before.Self == nil || after.Self == nil || before.Self.ID != after.Self.ID {
		t.Fatalf("node identity changed across a restart: %+v -> %+v", before.Self, after.Self)
	}
	ip := agent.OverlayIPv4(t)
	netns.Eventually(t, 20*time.Second, func() error { return ping(ctx, peer.Host, ip) })
}

// testAgentShutdown stops latchd with SIGTERM and checks that it removed
// its interface and its UAPI socket.
func testAgentShutdown(t *testing.T, agent *cluster.Agent) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := agent.Stop(); err != nil {
		t.Fatalf("latchd did not stop on SIGTERM: %v", err)
	}
	if _, err := agent.Host.Run(ctx, "ip", "link", "show", agent.Iface); err == nil {
		t.Errorf("interface %s still exists after latchd stopped", agent.Iface)
	}
	sock := "/var/run/wireguard/" + agent.Iface + ".sock"
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("UAPI socket %s still exists after latchd stopped", sock)
	}
}

// measureUpToFirstPacket runs `latch up` on agent while sending UDP probes
// from its host to peer's echo server every few milliseconds, and logs the
// time from the start of `latch up` to the first echo.
func measureUpToFirstPacket(t *testing.T, agent *cluster.Agent, key string, peer *cluster.Agent) {
	t.Helper()
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer.OverlayIPv4(t), echoPort))
	pc, err := agent.Host.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	first := make(chan time.Time, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		probe := []byte("first-packet-probe")
		buf := make([]byte, 64)
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Fails with "network unreachable" until the overlay exists.
			_, _ = pc.WriteTo(probe, dst)
			pc.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
			if n, _, err := pc.ReadFrom(buf); err == nil && bytes.Equal(buf[:n], probe) {
				first <- time.Now()
				return
			}
		}
	}()
	start := time.Now()
	out := agent.Up(t, key)
	upDone := time.Since(start)
	t.Logf("latch up on %s printed: %s", agent.Host.Name, strings.TrimSpace(out))
	select {
	case at := <-first:
		metric(t, "up_to_first_packet_ms", at.Sub(start).Milliseconds(), "host="+agent.Host.Name)
		metric(t, "latch_up_returned_ms", upDone.Milliseconds(), "host="+agent.Host.Name)
	case <-time.After(30 * time.Second):
		t.Fatalf("no packet crossed the overlay from %s to %s within 30s of latch up", agent.Host.Name, peer.Host.Name)
	}
}

func testDistinctAddresses(t *testing.T, coord *cluster.Coordinator, agents []*cluster.Agent) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seen := map[netip.Addr]string{}
	kernel := map[string][]netip.Prefix{}
	for _, a := range agents {
		addrs, err := a.OverlayAddrs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var v4, v6 int
		for _, p := range addrs {
			if other, dup := seen[p.Addr()]; dup {
				t.Errorf("%s and %s share overlay address %v", other, a.Host.Name, p.Addr())
			}
			seen[p.Addr()] = a.Host.Name
			switch {
			case p.Addr().Is4() && overlayV4.Contains(p.Addr()):
				v4++
			case p.Addr().Is6() && p.Addr().IsPrivate(): // fc00::/7, the ULA range
				v6++
			default:
				t.Errorf("%s has unexpected overlay address %v", a.Host.Name, p)
			}
		}
		if v4 != 1 || v6 != 1 {
			t.Errorf("%s: %d IPv4 and %d IPv6 overlay addresses (%v), want one each", a.Host.Name, v4, v6, addrs)
		}
		kernel[a.Host.Name] = addrs
		t.Logf("%s: interface %s, overlay %v", a.Host.Name, a.Iface, addrs)
	}
	nodes, err := coord.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != len(agents) {
		t.Fatalf("latch nodes list shows %d nodes, want %d", len(nodes), len(agents))
	}
	for _, nd := range nodes {
		want, ok := kernel[nd.Hostname]
		if !ok {
			t.Errorf("node %s (hostname %q) is none of the agents", nd.Name, nd.Hostname)
			continue
		}
		for _, p := range want {
			if !slices.ContainsFunc(nd.Addresses, func(q netip.Prefix) bool { return q.Addr() == p.Addr() }) {
				t.Errorf("node %s: coordinator says %v, kernel has %v", nd.Name, nd.Addresses, want)
			}
		}
	}
}

// testEveryPair checks ICMP (IPv4 and IPv6), TCP and UDP over the overlay
// from every agent in from to every other agent in to.
func testEveryPair(t *testing.T, from, to []*cluster.Agent) {
	for _, x := range from {
		for _, y := range to {
			if x == y {
				continue
			}
			t.Run(x.Host.Name+"-to-"+y.Host.Name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				addrs, err := y.OverlayAddrs(ctx)
				if err != nil {
					t.Fatal(err)
				}
				var v4, v6 netip.Addr
				for _, p := range addrs {
					if p.Addr().Is4() {
						v4 = p.Addr()
					} else {
						v6 = p.Addr()
					}
				}
				// The first packet may wait for a handshake.
				netns.Eventually(t, 20*time.Second, func() error { return ping(ctx, x.Host, v4) })
				if v6.IsValid() {
					netns.Eventually(t, 20*time.Second, func() error { return ping(ctx, x.Host, v6) })
				}
				payload := []byte(fmt.Sprintf("hello from %s to %s over TCP\n", x.Host.Name, y.Host.Name))
				if err := tcpEcho(ctx, x.Host, v4, payload); err != nil {
					t.Error(err)
				}
				if err := udpEcho(ctx, x.Host, v4, []byte("hello over UDP")); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

func testUnderlayCapture(t *testing.T, coord *cluster.Coordinator, agents []*cluster.Agent) {
	a, b := agents[0], agents[1]
	ipB := b.OverlayIPv4(t)
	capture := a.Host.StartCapture(t, "eth0")
	marker := fmt.Sprintf("latch-mark-%s", randHex(t, 3))[:16] // 16 bytes: ping -p's limit
	payload := bytes.Repeat([]byte(marker), 4096)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := tcpEcho(ctx, a.Host, ipB, payload); err != nil {
		t.Fatal(err)
	}
	if err := udpEcho(ctx, a.Host, ipB, []byte(marker)); err != nil {
		t.Fatal(err)
	}
	if err := ping(ctx, a.Host, ipB, "-s", "64", "-p", hex.EncodeToString([]byte(marker))); err != nil {
		t.Fatal(err)
	}
	pcap, err := capture.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if netns.ContainsMarker(pcap, []byte(marker)) {
		t.Errorf("the marker sent over the overlay appears in clear on %s's underlay (%s)", a.Host.Name, capture.Path())
	}
	pkts, err := netns.ParsePcap(pcap)
	if err != nil {
		t.Fatal(err)
	}
	agentIPs := map[netip.Addr]bool{}
	for _, ag := range agents {
		agentIPs[ag.Host.IP] = true
	}
	var wgBytesAB, control, arp, wg int
	for _, p := range pkts {
		switch {
		case p.EtherType == 0x0806:
			arp++
		case p.EtherType == 0x0800 && (p.Src == coord.Host.IP || p.Dst == coord.Host.IP):
			// The agent's control connection to the coordinator (TLS).
			if p.Proto != 6 || (p.SrcPort != cluster.CoordinatorPort && p.DstPort != cluster.CoordinatorPort) {
				t.Errorf("unexpected packet to or from the coordinator: %v", p)
			}
			control++
		case p.EtherType == 0x0800 && p.Proto == 17 && agentIPs[p.Src] && agentIPs[p.Dst]:
			wg++
			if (p.Src == a.Host.IP && p.Dst == b.Host.IP) || (p.Src == b.Host.IP && p.Dst == a.Host.IP) {
				wgBytesAB += len(p.Payload)
			}
		default:
			t.Errorf("packet on the underlay that is not WireGuard UDP between agents: %v", p)
		}
	}
	t.Logf("capture of %d packets: %d UDP between agents (%d bytes between %s and %s), %d control TCP, %d ARP",
		len(pkts), wg, wgBytesAB, a.Host.Name, b.Host.Name, control, arp)
	if wgBytesAB < 2*len(payload) {
		t.Errorf("only %d bytes of UDP between %s and %s for a %d-byte echo: the transfer did not cross this link", wgBytesAB, a.Host.Name, b.Host.Name, len(payload))
	}
}

func testWgShow(t *testing.T, coord *cluster.Coordinator, agents []*cluster.Agent) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodes, err := coord.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keyOf := map[string]string{}
	for _, nd := range nodes {
		keyOf[nd.Hostname] = nd.Key.String()
	}
	for _, a := range agents {
		var want []string
		for _, other := range agents {
			if other != a {
				want = append(want, keyOf[other.Host.Name])
			}
		}
		slices.Sort(want)
		got, err := a.WGPeers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("wg show %s peers on %s = %v, want the other nodes' keys %v", a.Iface, a.Host.Name, got, want)
		}
		st, err := a.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var fromStatus []string
		for _, p := range st.Peers {
			fromStatus = append(fromStatus, p.Key)
		}
		slices.Sort(fromStatus)
		if !slices.Equal(fromStatus, want) {
			t.Errorf("latch status on %s lists peer keys %v, want %v", a.Host.Name, fromStatus, want)
		}
	}
	out, err := agents[0].Host.Run(ctx, "wg", "show", agents[0].Iface)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wg show on %s:\n%s", agents[0].Host.Name, out.Stdout)
}

func testCoordinatorOutage(t *testing.T, coord *cluster.Coordinator, agents []*cluster.Agent) {
	a, b, c := agents[0], agents[1], agents[2]
	const interval = 20 * time.Millisecond
	s := startCounterStream(t, a.Host, b.OverlayIPv4(t), interval)
	s.waitFor(t, 25, 10*time.Second)

	coord.Kill(t)
	for _, ag := range agents {
		netns.Eventually(t, 60*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := ag.Status(ctx)
			if err != nil {
				return err
			}
			if st.State == "connected" {
				return fmt.Errorf("%s still says connected", ag.Host.Name)
			}
			return nil
		})
	}
	// Two more seconds of the stream with no coordinator, and new flows.
	s.waitFor(t, uint64(2*time.Second/interval), 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ping(ctx, a.Host, c.OverlayIPv4(t)); err != nil {
		t.Errorf("during the outage: %v", err)
	}
	if err := udpEcho(ctx, b.Host, c.OverlayIPv4(t), []byte("still here")); err != nil {
		t.Errorf("during the outage: %v", err)
	}

	restart := time.Now()
	coord.Start(t)
	for _, ag := range agents {
		ag.WaitConnected(t, len(agents)-1, 90*time.Second)
	}
	metric(t, "reconnect_after_restart_ms", time.Since(restart).Milliseconds())
	s.waitFor(t, 25, 10*time.Second)
	got, gap, err := s.state()
	s.stop()
	if err != nil {
		t.Fatalf("the TCP stream broke: %v", err)
	}
	metric(t, "stream_max_gap_ms", gap.Milliseconds(), fmt.Sprintf("echoes=%d", got))
	// Generous: a lost packet costs TCP a retransmission of 200 ms or more,
	// a broken data plane seconds or the stream; scheduling noise costs less.
	if gap > 3*time.Second {
		t.Errorf("the TCP stream stalled for %v (sending every %v)", gap, interval)
	}
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
