package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/wire"
)

// The hosts of the policy tests, each enrolled with a key carrying the tag
// of its name.
const (
	hostWeb = "web"
	hostAPI = "api"
	hostDB  = "db"
	hostCI  = "ci"
)

var policyHosts = []string{hostWeb, hostAPI, hostDB, hostCI}

// Ports the policy tests probe; every host serves TCP and UDP echo on all
// of them, so a packet that gets through is answered, never refused.
const (
	portSSH uint16 = 22
	portDB  uint16 = 5432
	portAPI uint16 = 8080
)

var probes = []probe{
	tcpProbe(portSSH), tcpProbe(portDB), tcpProbe(portAPI),
	udpProbe(portSSH), udpProbe(portDB), udpProbe(portAPI),
	icmpProbe,
}

// ruleAPIToDB and testAPIToDB are the lines of basePolicy that let api
// reach the database; policyWithoutAPIToDB drops them.
const (
	ruleAPIToDB = `    {"src": ["svc:api"], "dst": ["svc:db"]},  // the API reads the database` + "\n"
	testAPIToDB = `    {"src": "tag:api", "accept": ["svc:db"], "deny": ["tag:web:8080", "tag:db:22"]},` + "\n"
	testAPINoDB = `    {"src": "tag:api", "deny": ["svc:db", "tag:web:8080"]},` + "\n"
)

// basePolicy is the policy the issue describes: web -> svc:api (8080/tcp),
// api -> svc:db (5432/tcp), and CI may ask the DBAs for the database.
const basePolicy = `// Latch e2e: a web tier, an API, a database and a CI runner.
{
  "groups": {
    "group:dba": ["dba@example.com"],
  },
  "tagOwners": {
    "tag:web": [],
    "tag:api": [],
    "tag:db":  ["group:dba"],
    "tag:ci":  [],
  },
  "services": {
    "svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]},
    "svc:db":  {"tags": ["tag:db"],  "ports": ["5432/tcp"]},
  },
  "rules": [
    {"src": ["tag:web"], "dst": ["svc:api"]},
` + ruleAPIToDB + `  ],
  "access": [
    {"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba"], "maxDuration": "1h"},
  ],
  "tests": [
    {"src": "tag:web", "accept": ["svc:api"], "deny": ["svc:db", "tag:db:22", "tag:api:22", "tag:api:icmp"]},
` + testAPIToDB + `    {"src": "tag:ci", "deny": ["svc:api", "svc:db"]},
  ],
}
`

// policyWithoutAPIToDB is basePolicy with the api -> db rule removed (and
// its test turned around, or the save would fail it).
var policyWithoutAPIToDB = strings.Replace(strings.Replace(basePolicy, ruleAPIToDB, "", 1), testAPIToDB, testAPINoDB, 1)

// flow is one probe from one host to another.
type flow struct {
	src, dst string
	probe    probe
}

func (f flow) String() string { return fmt.Sprintf("%s -> %s %v", f.src, f.dst, f.probe) }

// basePolicyFlows are the only flows basePolicy admits.
var basePolicyFlows = map[flow]bool{
	{hostWeb, hostAPI, tcpProbe(portAPI)}: true,
	{hostAPI, hostDB, tcpProbe(portDB)}:   true,
}

// policyNet is the network of the policy tests: a coordinator and the
// agents of policyHosts, with echo services on every host.
type policyNet struct {
	coord  *cluster.Coordinator
	agents map[string]*cluster.Agent
	svcs   map[string]*services
	// v4 and v6 are each host's overlay addresses.
	v4, v6 map[string]netip.Addr
	// keys are each host's WireGuard public key, from the coordinator.
	keys map[string]string
	// baseVersion is the version basePolicy was first saved as.
	baseVersion int
	// dba is an access:approve token of dbaUser, made on first use.
	dba string
}

func (pn *policyNet) addrs(host string) []netip.Addr {
	return []netip.Addr{pn.v4[host], pn.v6[host]}
}

// hostOf returns the host owning overlay address a, or "".
func (pn *policyNet) hostOf(a netip.Addr) string {
	for h, v4 := range pn.v4 {
		if v4 == a || pn.v6[h] == a {
			return h
		}
	}
	return ""
}

// startPolicyNet starts the coordinator, saves basePolicy, enrolls each
// host with a one-off key carrying its tag, and waits until every agent
// sees exactly the peers the policy makes it need.
func startPolicyNet(t *testing.T) *policyNet {
	bins := setup(t)
	n := netns.NewNetwork(t)
	coordHost := n.AddHost("coord")
	pn := &policyNet{
		agents: map[string]*cluster.Agent{},
		svcs:   map[string]*services{},
		v4:     map[string]netip.Addr{},
		v6:     map[string]netip.Addr{},
		keys:   map[string]string{},
	}
	pn.coord = cluster.StartCoordinator(t, bins, coordHost)
	out := pn.coord.SetPolicy(t, basePolicy)
	t.Logf("latch policy set (the first policy):\n%s", out)
	pn.baseVersion = policyVersion(t, pn)
	for _, name := range policyHosts {
		h := n.AddHost(name)
		pn.svcs[name] = startServices(t, h, portSSH, portDB, portAPI)
		pn.agents[name] = cluster.StartAgent(t, bins, h, pn.coord)
	}
	for _, name := range policyHosts {
		key := pn.coord.CreateKey(t, "--tags", "tag:"+name, "--description", "e2e "+name)
		pn.agents[name].Up(t, key.Key)
	}
	for name, peers := range basePolicyPeers {
		pn.agents[name].WaitPeers(t, 30*time.Second, peers...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, name := range policyHosts {
		addrs := pn.recordAddrs(ctx, t, name)
		if !pn.v4[name].IsValid() || !pn.v6[name].IsValid() {
			t.Fatalf("%s: overlay addresses %v, want an IPv4 and an IPv6 one", name, addrs)
		}
	}
	nodes, err := pn.coord.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		pn.keys[nd.Hostname] = nd.Key.String()
		if want := []wire.Tag{wire.Tag("tag:" + nd.Hostname)}; !slices.Equal(nd.Tags, want) {
			t.Fatalf("node %s has tags %v, want %v (from its key)", nd.Name, nd.Tags, want)
		}
	}
	return pn
}

// basePolicyPeers are the peers each host may see under basePolicy: a
// peer only where a rule lets one of the two reach the other.
var basePolicyPeers = map[string][]string{
	hostWeb: {hostAPI},
	hostAPI: {hostWeb, hostDB},
	hostDB:  {hostAPI},
	hostCI:  nil,
}

// TestPolicyAdmitsOnlyAuthorizedPairsOverRealNamespaces runs web, api, db
// and ci under the policy web -> svc:api (8080/tcp), api -> svc:db
// (5432/tcp), with just-in-time access to svc:db for ci, and proves: the
// allowed pairs connect and every other pair and port is dropped (TCP,
// UDP, ICMP, IPv4 and IPv6); each node knows only the peers it needs; a
// forged overlay source address is dropped; an invalid policy is refused
// with its line and column and changes nothing; removing a rule cuts an
// established stream at once and restoring the old version brings it
// back; access requests follow the policy's access rules and approvers;
// a revoked grant stops its flow; and a grant stops at its expiry on the
// agents' clocks with the coordinator killed.
func TestPolicyAdmitsOnlyAuthorizedPairsOverRealNamespaces(t *testing.T) {
	pn := startPolicyNet(t)

	t.Run("AllowedPairsConnectAndEveryOtherPairAndPortIsDropped", func(t *testing.T) {
		checkFlows(t, pn, basePolicyFlows)
	})
	t.Run("EachNodeKnowsOnlyThePeersItNeeds", func(t *testing.T) {
		testNeedToKnow(t, pn)
	})
	t.Run("ForgedOverlaySourceAddressIsDropped", func(t *testing.T) {
		testSpoofing(t, pn)
	})
	t.Run("InvalidPolicyIsRefusedWithLineAndColumnAndOldOneKeepsWorking", func(t *testing.T) {
		testInvalidPolicies(t, pn)
	})
	t.Run("RemovingARuleStopsAnEstablishedStreamAtOnce", func(t *testing.T) {
		testRuleRemovalCutsStream(t, pn)
	})
	t.Run("RestoringTheOldVersionReopensThePair", func(t *testing.T) {
		testRestore(t, pn)
	})
	t.Run("AccessRequestsFollowTheAccessRulesAndApprovers", func(t *testing.T) {
		testAccessRequestRules(t, pn)
	})
	t.Run("RevokedGrantStopsItsFlow", func(t *testing.T) {
		testGrantRevoke(t, pn)
	})
	t.Run("GrantStopsAtItsExpiryWithTheCoordinatorKilled", func(t *testing.T) {
		testGrantExpiry(t, pn)
	})
}

// checkFlows proves that exactly the flows in allowed get through between
// the policy hosts, over IPv4 and IPv6: each allowed flow is answered
// (after a handshake, so it is polled), and every other pair and probe is
// dropped — sent in parallel with a short timeout, classified as a drop
// (timeout, no route) rather than a refusal or an error, absent from the
// destination's echo services, and absent from a capture of what the
// destination's Latch interface delivered to its kernel.
func checkFlows(t *testing.T, pn *policyNet, allowed map[flow]bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for f := range allowed {
		for _, dst := range pn.addrs(f.dst) {
			var last probeResult
			err := netns.Poll(20*time.Second, func() error {
				last = send(ctx, pn.agents[f.src].Host, dst, f.probe, 2*time.Second)
				if last.outcome != reached {
					return fmt.Errorf("%v to %v: %v", f, dst, last)
				}
				return nil
			})
			if err != nil {
				t.Errorf("allowed flow %v: %v", f, err)
			}
		}
	}

	captures := map[string]*netns.Capture{}
	for _, h := range policyHosts {
		a := pn.agents[h]
		captures[h] = a.Host.StartCapture(t, a.Iface)
	}
	type denial struct {
		flow
		addr netip.Addr // of flow.dst
		res  probeResult
	}
	var denials []*denial
	for _, src := range policyHosts {
		for _, dst := range policyHosts {
			if src == dst {
				continue
			}
			for _, p := range probes {
				f := flow{src, dst, p}
				if allowed[f] {
					continue
				}
				for _, a := range pn.addrs(dst) {
					denials = append(denials, &denial{flow: f, addr: a})
				}
			}
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	// The allowed flows once more, inside the captures: they show that a
	// capture does see what its interface delivers.
	for f := range allowed {
		for _, dst := range pn.addrs(f.dst) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if res := send(ctx, pn.agents[f.src].Host, dst, f.probe, 5*time.Second); res.outcome != reached {
					t.Errorf("allowed flow %v to %v, second time: %v", f, dst, res)
				}
			}()
		}
	}
	for _, d := range denials {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.res = send(ctx, pn.agents[d.src].Host, d.addr, d.probe, 1500*time.Millisecond)
		}()
	}
	wg.Wait()
	t.Logf("%d refused probes (and the allowed ones again) took %v in parallel", len(denials), time.Since(start).Round(time.Millisecond))
	byOutcome := map[string]int{}
	for _, d := range denials {
		byOutcome[d.res.String()]++
		if d.res.outcome != dropped {
			t.Errorf("%v to %v: %v; want it dropped", d.flow, d.addr, d.res)
		}
		if d.probe.proto != "icmp" {
			if n := pn.svcs[d.dst].count(d.probe, pn.addrOf(d.src, d.addr)); n > 0 {
				t.Errorf("%v: the %v server on %s saw %d connections or datagrams from %s", d.flow, d.probe, d.dst, n, d.src)
			}
		}
	}
	t.Logf("refused probes by outcome: %v", byOutcome)

	for _, h := range policyHosts {
		pcap, err := captures[h].Stop()
		if err != nil {
			t.Fatal(err)
		}
		pkts, err := netns.ParsePcap(pcap)
		if err != nil {
			t.Fatalf("capture on %s: %v", h, err)
		}
		var in, bad int
		for _, p := range pkts {
			if !slices.Contains(pn.addrs(h), p.Dst) {
				continue // outbound
			}
			in++
			if why := pn.unexpectedInbound(h, p, allowed); why != "" {
				bad++
				t.Errorf("%s's Latch interface delivered %v: %s", h, p, why)
			}
		}
		t.Logf("%s: %d packets on %s, %d of them delivered inbound, %d of those outside the allowed flows", h, len(pkts), pn.agents[h].Iface, in, bad)
		for f := range allowed {
			if (f.src == h || f.dst == h) && in == 0 {
				t.Errorf("the capture on %s saw nothing delivered, not even the allowed flow %v: it proves nothing", h, f)
			}
		}
	}
}

// addrOf returns src's overlay address of dst's family.
func (pn *policyNet) addrOf(src string, dst netip.Addr) netip.Addr {
	if dst.Is4() {
		return pn.v4[src]
	}
	return pn.v6[src]
}

// unexpectedInbound says why packet p, delivered to host h, belongs to no
// allowed flow (a new flow from its source or a reply to one of h's), or
// returns "" if it does.
func (pn *policyNet) unexpectedInbound(h string, p netns.Packet, allowed map[flow]bool) string {
	src := pn.hostOf(p.Src)
	if src == "" {
		return "from an address that is no node's"
	}
	var proto string
	switch p.Proto {
	case 6:
		proto = "tcp"
	case 17:
		proto = "udp"
	default:
		return fmt.Sprintf("protocol %d: no rule admits it", p.Proto)
	}
	if allowed[flow{src, h, probe{proto, p.DstPort}}] || allowed[flow{h, src, probe{proto, p.SrcPort}}] {
		return ""
	}
	return "no rule admits it in either direction"
}

// testNeedToKnow checks that `wg show` and `latch status --json` list
// exactly the peers the policy makes each node need, and that nothing
// about the others (key, addresses) appears on db at all.
func testNeedToKnow(t *testing.T, pn *policyNet) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, h := range policyHosts {
		a := pn.agents[h]
		var want []string
		for _, p := range basePolicyPeers[h] {
			want = append(want, pn.keys[p])
		}
		slices.Sort(want)
		got, err := a.WGPeers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("wg show %s peers on %s = %v, want the keys of %v: %v", a.Iface, h, got, basePolicyPeers[h], want)
		}
		st, err := a.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if names := st.PeerNames(); !slices.Equal(names, slices.Sorted(slices.Values(basePolicyPeers[h]))) {
			t.Errorf("latch status on %s lists peers %v, want %v", h, names, basePolicyPeers[h])
		}
	}

	db := pn.agents[hostDB]
	wgOut, err := db.Host.Run(ctx, "wg", "show", db.Iface, "dump")
	if err != nil {
		t.Fatal(err)
	}
	stOut, err := db.CLI(ctx, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	for _, stranger := range []string{hostWeb, hostCI} {
		secrets := []string{pn.keys[stranger], pn.v4[stranger].String(), pn.v6[stranger].String()}
		for _, s := range secrets {
			if strings.Contains(wgOut.Stdout, s) {
				t.Errorf("wg show %s dump on db mentions %s's %s", db.Iface, stranger, s)
			}
			if strings.Contains(stOut.Stdout, s) {
				t.Errorf("latch status --json on db mentions %s's %s", stranger, s)
			}
		}
	}
	out, err := db.Host.Run(ctx, "wg", "show", db.Iface)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wg show on db (api's key is %s):\n%s", pn.keys[hostAPI], out.Stdout)
}

// testSpoofing has db send TCP SYNs to api:8080 with web's overlay address
// as their source (a secondary address on db's Latch interface). The
// policy lets web reach api:8080, so only the binding of overlay
// addresses to WireGuard keys can stop them: api must never see them.
func testSpoofing(t *testing.T, pn *policyNet) {
	db, api := pn.agents[hostDB], pn.agents[hostAPI]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, forged := range pn.addrs(hostWeb) {
		target := pn.addrOf(hostAPI, forged)
		t.Run(map[bool]string{true: "IPv4", false: "IPv6"}[forged.Is4()], func(t *testing.T) {
			bits := 128
			if forged.Is4() {
				bits = 32
			}
			prefix := netip.PrefixFrom(forged, bits).String()
			db.Host.MustRun(t, ctx, "ip", "addr", "add", prefix, "dev", db.Iface, "nodad")
			defer db.Host.Run(context.Background(), "ip", "addr", "del", prefix, "dev", db.Iface)

			// The same probe from web itself gets through: the port is open
			// to web's identity.
			if res := send(ctx, pn.agents[hostWeb].Host, target, tcpProbe(portAPI), 5*time.Second); res.outcome != reached {
				t.Fatalf("web -> api tcp/8080 (the control): %v", res)
			}
			before := pn.svcs[hostAPI].count(tcpProbe(portAPI), forged)
			sent := db.Host.StartCapture(t, db.Iface, "tcp", "and", "src", "host", forged.String())
			got := api.Host.StartCapture(t, api.Iface, "tcp", "and", "src", "host", forged.String(), "and", "dst", "port", fmt.Sprint(portAPI))
			// 3 s: the SYN and its first retransmissions.
			sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
			res := sendTCP(sctx, db.Host, target, portAPI, &net.TCPAddr{IP: forged.AsSlice()})
			scancel()
			if res.outcome != dropped {
				t.Errorf("db -> api tcp/8080 from web's address %v: %v; want it dropped", forged, res)
			}
			sentPkts := stopCapture(t, sent)
			gotPkts := stopCapture(t, got)
			if len(sentPkts) == 0 {
				t.Fatalf("db sent no packet from %v into %s: the forgery did not happen, so it proves nothing", forged, db.Iface)
			}
			if len(gotPkts) > 0 {
				t.Errorf("api's Latch interface delivered %d packets from the forged source %v, first %v", len(gotPkts), forged, gotPkts[0])
			}
			if n := pn.svcs[hostAPI].count(tcpProbe(portAPI), forged) - before; n > 0 {
				t.Errorf("api's tcp/8080 server accepted %d connections from the forged source %v", n, forged)
			}
			t.Logf("db sent %d packets from %v to %v:%d into the tunnel; api delivered none", len(sentPkts), forged, target, portAPI)
		})
	}
}

func stopCapture(t *testing.T, c *netns.Capture) []netns.Packet {
	t.Helper()
	pcap, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	pkts, err := netns.ParsePcap(pcap)
	if err != nil {
		t.Fatalf("%s: %v", c.Name(), err)
	}
	return pkts
}

// policyVersion returns the coordinator's current policy version.
func policyVersion(t *testing.T, pn *policyNet) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := pn.coord.Policy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.Version
}

// recordAddrs reads the overlay addresses of host name's agent into pn.v4
// and pn.v6 and returns them.
func (pn *policyNet) recordAddrs(ctx context.Context, t *testing.T, name string) []netip.Prefix {
	t.Helper()
	addrs, err := pn.agents[name].OverlayAddrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range addrs {
		if p.Addr().Is4() {
			pn.v4[name] = p.Addr()
		} else {
			pn.v6[name] = p.Addr()
		}
	}
	return addrs
}
