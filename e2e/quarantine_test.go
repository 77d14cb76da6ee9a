package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/wire"
)

// The remediation host of the quarantine test and its service's port.
const (
	hostPatch        = "patch"
	portPatch uint16 = 8443
)

// quarantinePolicy lets web reach the API, and a quarantined node reach
// nothing but the patch server.
const quarantinePolicy = `// Latch e2e: quarantine keeps only remediation.
{
  "tagOwners": {"tag:web": [], "tag:api": [], "tag:patch": []},
  "services": {
    "svc:api":   {"tags": ["tag:api"],   "ports": ["8080/tcp"]},
    "svc:patch": {"tags": ["tag:patch"], "ports": ["8443/tcp"]},
  },
  "rules": [
    {"src": ["tag:web"], "dst": ["svc:api"]},
    // Remediation: a quarantined node may fetch patches, nothing else.
    {"src": ["status:quarantined"], "dst": ["svc:patch"]},
  ],
}
`

// Quarantine measurement: quarantineRuns quarantine+release cycles; each
// must be enforced by every agent within quarantineBound (generous: the
// goal, a second, is reported, not asserted).
const (
	quarantineRuns  = 20
	quarantineBound = 5 * time.Second
)

// The peers each host sees, without and with web in quarantine.
var (
	peersNormal      = map[string][]string{hostWeb: {hostAPI}, hostAPI: {hostWeb}, hostPatch: nil}
	peersQuarantined = map[string][]string{hostWeb: {hostPatch}, hostAPI: nil, hostPatch: {hostWeb}}
)

// startTaggedNet starts a coordinator with policy and, for each name, a
// host serving TCP and UDP echo on ports and an agent (latchd with
// agentArgs) enrolled with a one-off key tagged "tag:<name>". It waits
// until every agent is connected and returns the network as the policy
// tests' helpers (expectOutcomes, waitReached) take it.
func startTaggedNet(t *testing.T, policy string, names []string, ports []uint16, agentArgs ...string) *policyNet {
	t.Helper()
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
	pn.coord.SetPolicy(t, policy)
	for _, name := range names {
		h := n.AddHost(name)
		pn.svcs[name] = startServices(t, h, ports...)
		pn.agents[name] = cluster.StartAgent(t, bins, h, pn.coord, agentArgs...)
		key := pn.coord.CreateKey(t, "--tags", "tag:"+name, "--description", "e2e "+name)
		pn.agents[name].Up(t, key.Key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, name := range names {
		pn.recordAddrs(ctx, t, name)
		st, err := pn.agents[name].Status(ctx)
		if err != nil || st.Self == nil {
			t.Fatalf("%s: status %+v: %v", name, st, err)
		}
		pn.keys[name] = st.Self.Key
	}
	return pn
}

// waitPeerSets waits until every agent lists exactly the peers want says.
func waitPeerSets(t *testing.T, pn *policyNet, want map[string][]string) {
	t.Helper()
	for name, peers := range want {
		pn.agents[name].WaitPeers(t, 30*time.Second, peers...)
	}
}

// watchPeerSet polls a's status every 10 ms until it is connected with
// exactly the peers in want, and sends the time it saw that, or a zero
// time at the deadline.
func watchPeerSet(a *cluster.Agent, want []string, deadline time.Duration) <-chan time.Time {
	want = slices.Sorted(slices.Values(want))
	ch := make(chan time.Time, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			st, err := a.Status(ctx)
			if err == nil && st.State == "connected" && slices.Equal(st.PeerNames(), want) {
				ch <- time.Now()
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
		}
		ch <- time.Time{}
	}()
	return ch
}

// switchQuarantine runs `latch nodes VERB web` and measures, for each
// agent, the time from the call to its netmap holding exactly the peers
// in want. It returns the call's start and the time to the last agent.
func switchQuarantine(t *testing.T, pn *policyNet, verb string, want map[string][]string) (time.Time, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	watchers := map[string]<-chan time.Time{}
	for name, peers := range want {
		watchers[name] = watchPeerSet(pn.agents[name], peers, 30*time.Second)
	}
	args := []string{"nodes", verb, hostWeb}
	if verb == "quarantine" {
		args = append(args, "--reason", "e2e: risk score high")
	}
	start := time.Now()
	if _, err := pn.coord.Admin(ctx, args...); err != nil {
		t.Fatalf("latch %s: %v", strings.Join(args, " "), err)
	}
	returned := time.Since(start)
	var last time.Duration
	var per []string
	for _, name := range slices.Sorted(maps.Keys(watchers)) {
		at := <-watchers[name]
		if at.IsZero() {
			t.Fatalf("after latch nodes %s web, %s never held peers %v", verb, name, want[name])
		}
		d := at.Sub(start)
		last = max(last, d)
		per = append(per, fmt.Sprintf("%s=%dms", name, d.Milliseconds()))
	}
	metric(t, verb+"_to_last_peer_ms", last.Milliseconds(), "cli_returned_ms="+fmt.Sprint(returned.Milliseconds()), strings.Join(per, " "))
	return start, last
}

// TestQuarantinedNodeKeepsOnlyRemediationWithinASecond quarantines web
// with `latch nodes quarantine`: web's established stream to the API is
// cut, web can no longer reach the API nor does the API see it, and web
// reaches the patch server (the only rule naming status:quarantined);
// `latch nodes unquarantine` restores it. Then it repeats the cycle to
// measure the time from the CLI call to the last agent enforcing.
func TestQuarantinedNodeKeepsOnlyRemediationWithinASecond(t *testing.T) {
	pn := startTaggedNet(t, quarantinePolicy, []string{hostWeb, hostAPI, hostPatch}, []uint16{portAPI, portPatch})
	waitPeerSets(t, pn, peersNormal)
	web, api := pn.agents[hostWeb], pn.agents[hostAPI]
	webToAPI := flow{hostWeb, hostAPI, tcpProbe(portAPI)}
	webToPatch := flow{hostWeb, hostPatch, tcpProbe(portPatch)}
	waitReached(t, pn, webToAPI, 20*time.Second)
	expectOutcomes(t, pn, "before quarantine", map[flow]outcome{
		webToPatch:                            dropped,
		{hostAPI, hostWeb, tcpProbe(portAPI)}: dropped,
	})

	// An established stream from web to the API, an echo every 20 ms.
	s := startCounterStreamTo(t, web.Host, netip.AddrPortFrom(pn.v4[hostAPI], portAPI), 20*time.Millisecond)
	s.waitFor(t, 25, 10*time.Second)

	start, first := switchQuarantine(t, pn, "quarantine", peersQuarantined)
	last, echoes := s.waitStalled(t, time.Second, 15*time.Second)
	cut := last.Sub(start)
	metric(t, "quarantine_to_stream_cut_ms", max(0, cut.Milliseconds()), "how=last_echo_of_a_20ms_tcp_stream")
	if cut > quarantineBound {
		t.Errorf("web's stream to the API went on for %v after latch nodes quarantine", cut)
	}
	// Quarantined: only remediation. Nothing of web reaches the API.
	before := pn.svcs[hostAPI].count(tcpProbe(portAPI), pn.v4[hostWeb])
	waitReached(t, pn, webToPatch, 10*time.Second)
	expectOutcomes(t, pn, "in quarantine", map[flow]outcome{
		webToAPI:                              dropped,
		{hostWeb, hostAPI, udpProbe(portAPI)}: dropped,
		{hostAPI, hostWeb, tcpProbe(portAPI)}: dropped,
	})
	if after := pn.svcs[hostAPI].count(tcpProbe(portAPI), pn.v4[hostWeb]); after != before {
		t.Errorf("the API accepted %d connections from quarantined web", after-before)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if keys, err := api.WGPeers(ctx); err != nil {
		t.Fatal(err)
	} else if slices.Contains(keys, pn.keys[hostWeb]) {
		t.Errorf("wg show on api still lists quarantined web")
	}
	if got, _, _ := s.state(); got != echoes {
		t.Errorf("the stream resumed in quarantine: %d echoes, %d when it stopped", got, echoes)
	}
	s.stop()
	nodes, err := pn.coord.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(nodes, func(n wire.NodeInfo) bool { return n.Hostname == hostWeb }); i < 0 || !nodes[i].Quarantined {
		t.Errorf("latch nodes list does not show web quarantined")
	}

	// Released: access as before, and no more remediation.
	_, released := switchQuarantine(t, pn, "unquarantine", peersNormal)
	waitReached(t, pn, webToAPI, 20*time.Second) // as the grant tests: a first handshake can stall
	expectOutcomes(t, pn, "after release", map[flow]outcome{webToPatch: dropped})

	// More cycles, measured.
	runs := map[string][]time.Duration{"quarantine": {first}, "unquarantine": {released}}
	for len(runs["quarantine"]) < quarantineRuns {
		_, d := switchQuarantine(t, pn, "quarantine", peersQuarantined)
		runs["quarantine"] = append(runs["quarantine"], d)
		_, d = switchQuarantine(t, pn, "unquarantine", peersNormal)
		runs["unquarantine"] = append(runs["unquarantine"], d)
	}
	for _, verb := range []string{"quarantine", "unquarantine"} {
		r := runs[verb]
		for i, d := range r {
			if d > quarantineBound {
				t.Errorf("run %d: %s took %v to reach the last agent, bound %v", i+1, verb, d, quarantineBound)
			}
		}
		slices.Sort(r)
		metric(t, verb+"_to_last_peer_ms_p50", r[len(r)/2].Milliseconds(), fmt.Sprintf("runs=%d", len(r)), "agents=3", "goal_ms=1000")
		metric(t, verb+"_to_last_peer_ms_max", r[len(r)-1].Milliseconds(), fmt.Sprintf("runs=%d", len(r)), "agents=3", "goal_ms=1000")
	}
}
