// Command latch-bench measures TCP throughput between two namespace hosts
// three ways in one run: over the bare veth, through a bare wireguard-go
// built from the same module version Latch embeds, and through Latch (a
// coordinator and two latchd agents). It runs iperf3 (one stream, -t
// seconds) several times per path, interleaving the paths, and prints the
// medians and the ratios Latch/wireguard-go and Latch/veth.
//
// It needs root, iperf3, wg and ip, and the binaries latch-coordinator,
// latchd, latch and wireguard-go in -bin (make bench builds them). Every
// namespace and process it makes is removed on exit and on SIGINT.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
)

// Ports and addresses of the bare wireguard-go path. 198.19.0.0/24 is in
// the benchmarking range and exists only inside the bench's namespaces.
const (
	iperfPort  = 5201
	bareWGPort = 51900
	bareWGMTU  = netns.MTU - 60 // IPv4 underlay: the same MTU Latch derives
)

var bareWGNet = netip.MustParsePrefix("198.19.0.0/24")

func main() {
	bin := flag.String("bin", "bin", "directory holding latch-coordinator, latchd, latch and wireguard-go")
	reps := flag.Int("reps", 3, "repetitions per path (at least 3)")
	secs := flag.Int("time", 10, "seconds per iperf3 run")
	only := flag.String("paths", "veth,wireguard-go,latch", "comma-separated paths to measure")
	flag.Parse()
	want := map[string]bool{}
	for _, p := range strings.Split(*only, ",") {
		if !slices.Contains(allPaths, p) {
			fmt.Fprintf(os.Stderr, "latch-bench: unknown path %q (want some of %s)\n", p, strings.Join(allPaths, ","))
			os.Exit(2)
		}
		want[p] = true
	}
	if *reps < 3 {
		fmt.Fprintln(os.Stderr, "latch-bench: -reps must be at least 3")
		os.Exit(2)
	}
	if err := preflight(*bin, want); err != nil {
		fmt.Fprintf(os.Stderr, "latch-bench: %v\n", err)
		os.Exit(1)
	}
	s := netns.NewSession(os.Stderr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		got := <-sig
		fmt.Fprintf(os.Stderr, "latch-bench: %v: cleaning up\n", got)
		s.Close()
		os.Exit(130)
	}()
	if removed, err := netns.Sweep(); err == nil {
		for _, r := range removed {
			s.Logf("swept leftover %s", r)
		}
	}
	err := run(s, *bin, want, *reps, *secs)
	s.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "latch-bench: %v\n", err)
		os.Exit(1)
	}
}

// allPaths are the paths latch-bench knows, in table order.
var allPaths = []string{"veth", "wireguard-go", "latch"}

func preflight(bin string, want map[string]bool) error {
	if err := netns.Check(); err != nil {
		return err
	}
	for _, tool := range []string{"iperf3", "wg"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (run scripts/install-deps)", tool)
		}
	}
	if want["latch"] {
		if err := cluster.FindBinaries(bin).Require(); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(bin, "wireguard-go")); want["wireguard-go"] && err != nil {
		return fmt.Errorf("wireguard-go not in %s (make bench builds it): %w", bin, err)
	}
	return nil
}

// path is one way from host a to host b that iperf3 measures.
type path struct {
	name    string
	dst     netip.Addr
	samples []float64 // Gbit/s
}

func run(s *netns.Session, bin string, want map[string]bool, reps, secs int) error {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	n := netns.NewNetwork(s)
	coordHost, a, b := n.AddHost("coord"), n.AddHost("a"), n.AddHost("b")
	var paths []*path
	var ifaces []string
	if want["veth"] {
		paths = append(paths, &path{name: "veth", dst: b.IP})
	}
	if want["wireguard-go"] {
		s.Logf("starting bare wireguard-go on %v and %v", a, b)
		wgIfaceA, wgB, err := startBareWireGuard(s, filepath.Join(abs, "wireguard-go"), a, b)
		if err != nil {
			return err
		}
		paths = append(paths, &path{name: "wireguard-go", dst: wgB})
		ifaces = append(ifaces, wgIfaceA)
	}
	if want["latch"] {
		s.Logf("starting Latch: coordinator on %v, agents on %v and %v", coordHost, a, b)
		mesh := cluster.StartMesh(s, cluster.FindBinaries(abs), coordHost, a, b)
		paths = append(paths, &path{name: "latch", dst: mesh.Agents[1].OverlayIPv4(s)})
		ifaces = append(ifaces, mesh.Agents[0].Iface)
	}

	s.Logf("starting iperf3 server on %v", b)
	b.Start(s, "iperf3", "--server", "--port", fmt.Sprint(iperfPort))
	for _, p := range paths {
		a.WaitTCP(s, netip.AddrPortFrom(p.dst, iperfPort).String(), 30*time.Second)
	}
	logOffloads(s, a, ifaces...)

	for rep := range reps {
		for i := range paths {
			// Rotate the order every repetition so that drift in the
			// machine's load does not favour one path.
			p := paths[(i+rep)%len(paths)]
			gbps, err := iperf(a, p.dst, secs)
			if err != nil {
				return fmt.Errorf("%s, repetition %d: %w", p.name, rep+1, err)
			}
			p.samples = append(p.samples, gbps)
			s.Logf("rep %d/%d %-13s %6.2f Gbit/s", rep+1, reps, p.name, gbps)
		}
	}
	printTable(paths, secs)
	return nil
}

// startBareWireGuard runs a standalone wireguard-go on each host and
// configures it with wg(8) and ip(8) into a two-peer tunnel; it returns
// a's interface name and b's tunnel address.
func startBareWireGuard(s *netns.Session, wgGo string, a, b *netns.Host) (string, netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type end struct {
		host  *netns.Host
		iface string
		addr  netip.Addr
		pub   string
		key   string // private key file
	}
	ends := []*end{{host: a}, {host: b}}
	for i, e := range ends {
		e.iface = e.host.NewIfName()
		e.addr = netip.AddrFrom4([4]byte{bareWGNet.Addr().As4()[0], bareWGNet.Addr().As4()[1], 0, byte(i + 1)})
		e.key = filepath.Join(e.host.Dir, "bare-wg.key")
		p := e.host.StartEnv(s, []string{"LOG_LEVEL=error"}, wgGo, "-f", e.iface)
		if err := netns.Poll(30*time.Second, func() error {
			if p.Exited() {
				return netns.Permanent(fmt.Errorf("wireguard-go exited: %s", p.Log()))
			}
			_, err := os.Stat(filepath.Join("/var/run/wireguard", e.iface+".sock"))
			return err
		}); err != nil {
			return "", netip.Addr{}, err
		}
		res, err := e.host.Run(ctx, "sh", "-c", fmt.Sprintf("umask 077; wg genkey > %s && wg pubkey < %s", e.key, e.key))
		if err != nil {
			return "", netip.Addr{}, err
		}
		e.pub = strings.TrimSpace(res.Stdout)
	}
	for i, e := range ends {
		peer := ends[1-i]
		cmds := [][]string{
			{"wg", "set", e.iface, "listen-port", fmt.Sprint(bareWGPort), "private-key", e.key,
				"peer", peer.pub, "allowed-ips", netip.PrefixFrom(peer.addr, 32).String(),
				"endpoint", netip.AddrPortFrom(peer.host.IP, bareWGPort).String()},
			{"ip", "addr", "add", netip.PrefixFrom(e.addr, bareWGNet.Bits()).String(), "dev", e.iface},
			{"ip", "link", "set", e.iface, "mtu", fmt.Sprint(bareWGMTU), "up"},
		}
		for _, c := range cmds {
			if _, err := e.host.Run(ctx, c...); err != nil {
				return "", netip.Addr{}, err
			}
		}
	}
	err := netns.Poll(20*time.Second, func() error {
		_, err := a.Run(ctx, "ping", "-n", "-c", "1", "-W", "1", ends[1].addr.String())
		return err
	})
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("bare wireguard-go tunnel does not pass pings: %w", err)
	}
	return ends[0].iface, ends[1].addr, nil
}

// iperf runs one iperf3 client from a and returns the received rate.
func iperf(a *netns.Host, dst netip.Addr, secs int) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+60)*time.Second)
	defer cancel()
	res, err := a.Run(ctx, "iperf3", "--client", dst.String(), "--port", fmt.Sprint(iperfPort),
		"--time", fmt.Sprint(secs), "--parallel", "1", "--json")
	var out struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal([]byte(res.Stdout), &out); jerr != nil {
		return 0, errors.Join(err, fmt.Errorf("reading iperf3 output: %w", jerr))
	}
	if out.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", out.Error)
	}
	if err != nil {
		return 0, err
	}
	return out.End.SumReceived.BitsPerSecond / 1e9, nil
}

// logOffloads shows whether each TUN device has the virtio-net header
// (GSO/GRO offloads) on, which decides most of the WireGuard throughput.
func logOffloads(s *netns.Session, h *netns.Host, ifaces ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, iface := range ifaces {
		res, err := h.Run(ctx, "ip", "-d", "link", "show", iface)
		if err != nil {
			s.Logf("offloads of %s: %v", iface, err)
			continue
		}
		state := "unknown"
		if i := strings.Index(res.Stdout, "vnet_hdr "); i >= 0 {
			state = strings.Fields(res.Stdout[i+len("vnet_hdr "):])[0]
		}
		s.Logf("%s on %s: vnet_hdr %s", iface, h.Name, state)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func printTable(paths []*path, secs int) {
	med := map[string]float64{}
	fmt.Printf("\nTCP throughput between two namespace hosts (iperf3, 1 stream, %d s per run, medians)\n\n", secs)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "path\tmedian Gbit/s\truns Gbit/s\t")
	for _, p := range paths {
		med[p.name] = median(p.samples)
	}
	for _, p := range paths {
		var runs []string
		for _, x := range p.samples {
			runs = append(runs, fmt.Sprintf("%.2f", x))
		}
		fmt.Fprintf(w, "%s\t%.2f\t%s\t\n", p.name, med[p.name], strings.Join(runs, " "))
	}
	w.Flush()
	fmt.Println()
	ratio := func(a, b string) string {
		if med[a] == 0 || med[b] == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", med[a]/med[b])
	}
	fmt.Printf("latch / wireguard-go = %s\n", ratio("latch", "wireguard-go"))
	fmt.Printf("latch / veth         = %s\n", ratio("latch", "veth"))
	fmt.Printf("BENCH latch_gbps=%.2f wireguard_go_gbps=%.2f veth_gbps=%.2f latch_over_wireguard_go=%s latch_over_veth=%s\n",
		med["latch"], med["wireguard-go"], med["veth"], ratio("latch", "wireguard-go"), ratio("latch", "veth"))
}
