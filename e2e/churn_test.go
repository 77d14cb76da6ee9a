package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latchnet/latch/agent/control"
	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Churn sizes. make test runs the default (a correctness test that also
// reports its figures); make churn (called by make bench) sets
// LATCH_CHURN_RUNNERS=500.
const (
	defaultChurnRunners = 40
	// churnArrival spaces runner arrivals: 500 runners take about three
	// minutes, below the coordinator's default enrollment rate limits
	// (5/s per key, 10/s per source address).
	churnArrival = 350 * time.Millisecond
	// churnLife bounds a stand-in's life once it has its netmap.
	churnLifeMin, churnLifeMax = 2 * time.Second, 12 * time.Second
	// churnVanish is the share of stand-ins that vanish (stream cut, no
	// leave) instead of leaving.
	churnVanish = 0.3
	// churnPoll is how often the observers' WireGuard peers are read.
	churnPoll = 250 * time.Millisecond
)

// churnPolicy lets the permanent observers (tag:mesh) reach every runner
// (tag:ci) and each other, and runners reach the observers only.
const churnPolicy = `{
  "tagOwners": {"tag:mesh": [], "tag:ci": []},
  "rules": [
    {"src": ["tag:mesh"], "dst": ["tag:mesh:1-65535", "tag:ci:1-65535"]},
    {"src": ["tag:ci"], "dst": ["tag:mesh:1-65535"]},
  ],
}
`

// churnExit is how one runner went.
type churnExit struct {
	key   string // WireGuard public key
	at    time.Time
	clean bool
	real  bool // a latchd agent rather than a stand-in
}

// churnLog collects the churn's events; safe for concurrent use.
type churnLog struct {
	mu           sync.Mutex
	addrs        map[netip.Addr][]string // overlay IPv4 -> node IDs that got it
	enrolls      []time.Duration
	enrollErrs   []string
	streamErrs   []string
	exits        []churnExit
	enrolledKeys map[string]bool
	rateLimited  int // enrollments answered 429 and retried
}

func (l *churnLog) enrolled(id string, addr netip.Addr, key string, took time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addrs[addr] = append(l.addrs[addr], id)
	l.enrolls = append(l.enrolls, took)
	l.enrolledKeys[key] = true
}

func (l *churnLog) fail(list *[]string, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*list = append(*list, fmt.Sprintf(format, args...))
}

func (l *churnLog) exited(e churnExit) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.exits = append(l.exits, e)
}

// peerWatch polls the observers' `wg show <iface> peers` and remembers,
// per key, the last poll that found it on any observer.
type peerWatch struct {
	mu       sync.Mutex
	polls    []time.Time          // start of every complete poll
	lastSeen map[string]time.Time // key -> start of the last poll listing it
	rssPeak  int64
}

// removedAt returns the start of the first complete poll after key was
// last seen: when every observer had dropped it.
func (w *peerWatch) removedAt(key string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, ok := w.lastSeen[key]
	if !ok {
		return time.Time{}, false
	}
	i, _ := slices.BinarySearchFunc(w.polls, last, func(a, b time.Time) int { return a.Compare(b) })
	for ; i < len(w.polls); i++ {
		if w.polls[i].After(last) {
			return w.polls[i], true
		}
	}
	return time.Time{}, false
}

func (w *peerWatch) run(ctx context.Context, coord *cluster.Coordinator, observers []*cluster.Agent) {
	tick := time.NewTicker(churnPoll)
	defer tick.Stop()
	for ctx.Err() == nil {
		start := time.Now()
		seen := map[string]bool{}
		ok := true
		for _, o := range observers {
			keys, err := o.WGPeers(ctx)
			if err != nil {
				ok = false
				break
			}
			for _, k := range keys {
				seen[k] = true
			}
		}
		rss, _ := coord.Proc().RSS()
		w.mu.Lock()
		if ok {
			w.polls = append(w.polls, start)
			for k := range seen {
				w.lastSeen[k] = start
			}
		}
		w.rssPeak = max(w.rssPeak, rss)
		w.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// TestEphemeralChurn enrolls LATCH_CHURN_RUNNERS ephemeral runners
// (default 40) one every 350 ms against a real coordinator at its default
// ephemeral grace: control-protocol stand-ins (package agent/control, from
// their own namespace) that enroll with a reusable ephemeral key, open the
// netmap stream, live 2-12 s and then leave (70%) or vanish (stream cut,
// no leave); and, among them, real latchd runners (--state mem) that exit
// by SIGTERM or are killed with SIGKILL, in turn. Two permanent latchd
// observers see every runner. It asserts zero failed enrollments, no
// overlay address handed out twice, every runner deleted in the end, and
// no stale peer on the observers (wg show and their netmaps); it reports
// enrollment latency, the time from a runner's exit to its removal from
// every observer (clean and unclean) and the coordinator's RSS before,
// at peak and after.
func TestEphemeralChurn(t *testing.T) {
	bins := setup(t)
	runners := defaultChurnRunners
	if s := os.Getenv("LATCH_CHURN_RUNNERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("LATCH_CHURN_RUNNERS=%q: want a positive number", s)
		}
		runners = n
	}
	n := netns.NewNetwork(t)
	coord := cluster.StartCoordinator(t, bins, n.AddHost("coord"))
	coord.SetPolicy(t, churnPolicy)
	obsKey := coord.CreateKey(t, "--reusable", "--tags", "tag:mesh", "--description", "churn observers")
	ciKey := coord.CreateKey(t, "--reusable", "--ephemeral", "--tags", "tag:ci", "--description", "churn runners")
	var observers []*cluster.Agent
	for _, name := range []string{"obs1", "obs2"} {
		a := cluster.StartAgent(t, bins, n.AddHost(name), coord)
		a.Up(t, obsKey.Key)
		observers = append(observers, a)
	}
	for _, o := range observers {
		o.WaitConnected(t, len(observers)-1, 30*time.Second)
	}
	standins := n.AddHost("standins")
	realHosts := []*netns.Host{n.AddHost("real1"), n.AddHost("real2")}

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(runners)*churnArrival+10*time.Minute)
	defer cancel()
	time.Sleep(2 * time.Second) // let the coordinator settle before the baseline (a measurement, not a wait for an event)
	rssBase, err := coord.Proc().RSS()
	if err != nil {
		t.Fatal(err)
	}

	log := &churnLog{addrs: map[netip.Addr][]string{}, enrolledKeys: map[string]bool{}}
	watch := &peerWatch{lastSeen: map[string]time.Time{}}
	wctx, stopWatch := context.WithCancel(ctx)
	var watchWG sync.WaitGroup
	watchWG.Add(1)
	go func() { defer watchWG.Done(); watch.run(wctx, coord, observers) }()

	// Real runners: latchd with memory state, in turn exiting cleanly and
	// being killed, until the stand-ins are all started (at least once).
	arrivalsDone := make(chan struct{})
	var realWG sync.WaitGroup
	for i, h := range realHosts {
		realWG.Add(1)
		go func() {
			defer realWG.Done()
			for cycle := 0; ; cycle++ {
				clean := (cycle+i)%2 == 0
				realRunner(t, ctx, bins, h, coord, observers, ciKey.Key, clean, log)
				select {
				case <-arrivalsDone:
					return
				case <-ctx.Done():
					return
				default:
				}
			}
		}()
	}

	// Stand-ins.
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 5))
	dial := control.WithDial(ctx, standins.DialContext)
	var wg sync.WaitGroup
	churnStart := time.Now()
	for i := range runners {
		life := churnLifeMin + time.Duration(rng.Int64N(int64(churnLifeMax-churnLifeMin)))
		vanish := rng.Float64() < churnVanish
		wg.Add(1)
		go func() {
			defer wg.Done()
			standIn(dial, coord, ciKey.Key, fmt.Sprintf("ci-%d", i), life, vanish, log)
		}()
		select {
		case <-time.After(churnArrival):
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	close(arrivalsDone)
	wg.Wait()
	realWG.Wait()
	churnTook := time.Since(churnStart)

	// Settle: every runner deleted (vanished ones after the grace), and
	// the observers left with each other only.
	netns.Eventually(t, 2*time.Minute, func() error {
		nodes, err := coord.Nodes(ctx)
		if err != nil {
			return err
		}
		if len(nodes) != len(observers) {
			return fmt.Errorf("%d nodes remain, want the %d observers", len(nodes), len(observers))
		}
		return nil
	})
	stale := 0
	netns.Eventually(t, time.Minute, func() error {
		stale = 0
		for _, o := range observers {
			keys, err := o.WGPeers(ctx)
			if err != nil {
				return err
			}
			st, err := o.Status(ctx)
			if err != nil {
				return err
			}
			want := len(observers) - 1
			stale += max(0, len(keys)-want) + max(0, len(st.Peers)-want)
		}
		if stale > 0 {
			return fmt.Errorf("%d stale peers on the observers", stale)
		}
		return nil
	})
	time.Sleep(5 * time.Second) // RSS after settling (a measurement)
	stopWatch()
	watchWG.Wait()
	rssAfter, err := coord.Proc().RSS()
	if err != nil {
		t.Fatal(err)
	}

	// Findings.
	log.mu.Lock()
	defer log.mu.Unlock()
	dups := 0
	for a, ids := range log.addrs {
		if len(ids) > 1 {
			dups += len(ids) - 1
			t.Errorf("address %v handed out %d times: %v", a, len(ids), ids)
		}
	}
	for _, e := range log.enrollErrs {
		t.Errorf("enrollment failed: %s", e)
	}
	for _, e := range log.streamErrs {
		t.Errorf("stream failed: %s", e)
	}
	var clean, unclean, realClean, realKill []time.Duration
	unseen := 0
	for _, e := range log.exits {
		at, ok := watch.removedAt(e.key)
		if !ok {
			unseen++ // gone before any observer listed it
			continue
		}
		d := max(0, at.Sub(e.at))
		switch {
		case e.real && e.clean:
			realClean = append(realClean, d)
		case e.real:
			realKill = append(realKill, d)
		case e.clean:
			clean = append(clean, d)
		default:
			unclean = append(unclean, d)
		}
	}
	total := len(log.enrolls) + len(log.enrollErrs)
	labels := []string{"runners=" + strconv.Itoa(runners), "took=" + churnTook.Round(time.Second).String()}
	metric(t, "churn_enrollments", total, labels...)
	metric(t, "churn_enroll_failures", len(log.enrollErrs), labels...)
	metric(t, "churn_enroll_rate_limited_retries", log.rateLimited, labels...)
	metric(t, "churn_stream_failures", len(log.streamErrs), labels...)
	metric(t, "churn_duplicate_addresses", dups, labels...)
	metric(t, "churn_stale_peers", stale, labels...)
	metric(t, "churn_exits_unseen_by_observers", unseen, labels...)
	reportDurations(t, "churn_enroll_ms", log.enrolls, labels...)
	reportDurations(t, "churn_removal_leave_ms", clean, labels...)
	reportDurations(t, "churn_removal_vanish_ms", unclean, labels...)
	reportDurations(t, "churn_removal_latchd_sigterm_ms", realClean, labels...)
	reportDurations(t, "churn_removal_latchd_sigkill_ms", realKill, labels...)
	// Robustness: streams the coordinator dropped as too slow, and
	// observer reconnects, during the churn.
	slow := strings.Count(coord.Proc().Log(), "dropping slow netmap subscriber")
	reconnects := 0
	for _, o := range observers {
		reconnects += strings.Count(o.Proc().Log(), "coordinator stream ended; reconnecting")
	}
	metric(t, "churn_slow_subscribers_dropped", slow, labels...)
	metric(t, "churn_observer_reconnects", reconnects, labels...)
	metric(t, "churn_coord_rss_kb_baseline", rssBase, labels...)
	metric(t, "churn_coord_rss_kb_peak", watch.rssPeak, labels...)
	metric(t, "churn_coord_rss_kb_after", rssAfter, append(labels, fmt.Sprintf("after/baseline=%.2f", float64(rssAfter)/float64(rssBase)))...)
}

// reportDurations emits p50, p95 and max of ds in milliseconds.
func reportDurations(t *testing.T, name string, ds []time.Duration, labels ...string) {
	t.Helper()
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	l := append(slices.Clone(labels), "n="+strconv.Itoa(len(ds)))
	metric(t, name+"_p50", ds[len(ds)/2].Milliseconds(), l...)
	metric(t, name+"_p95", ds[len(ds)*95/100].Milliseconds(), l...)
	metric(t, name+"_max", ds[len(ds)-1].Milliseconds(), l...)
}

// standIn is one control-protocol runner: enroll, stream until the first
// netmap, live, then leave or vanish.
func standIn(ctx context.Context, coord *cluster.Coordinator, authKey, host string, life time.Duration, vanish bool, log *churnLog) {
	wgPriv, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		log.fail(&log.enrollErrs, "%s: %v", host, err)
		return
	}
	wgPub := wire.NodePublic(wgPriv.PublicKey())
	_, certKey, _ := ed25519.GenerateKey(rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, certKey)
	if err != nil {
		log.fail(&log.enrollErrs, "%s: %v", host, err)
		return
	}
	start := time.Now()
	req := wire.EnrollRequest{
		AuthKey: authKey, Hostname: host, Ephemeral: true, WireGuardKey: wgPub, CSR: csr,
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.250:51820")},
	}
	en, err := control.Enroll(ctx, coord.URL, req)
	// A rate-limited enrollment (the pacing keeps under the limits, but a
	// stalled machine can bunch arrivals up) is retried like a real
	// runner would, and counted.
	for try := 0; err != nil && strings.Contains(err.Error(), "too many") && try < 10; try++ {
		log.mu.Lock()
		log.rateLimited++
		log.mu.Unlock()
		time.Sleep(time.Second)
		en, err = control.Enroll(ctx, coord.URL, req)
	}
	if err != nil {
		log.fail(&log.enrollErrs, "%s: %v", host, err)
		return
	}
	log.enrolled(string(en.Node.ID), en.Node.Addresses[0].Addr(), wgPub.String(), time.Since(start))
	tlsCert := &tls.Certificate{Certificate: [][]byte{en.Cert.Raw}, PrivateKey: certKey, Leaf: en.Cert}
	c, err := control.NewClient(control.ClientConfig{
		BaseURL: coord.URL, CA: en.CA, NodeID: en.Node.ID, NetmapKey: en.NetmapKey,
		Certificate: func() (*tls.Certificate, error) { return tlsCert, nil },
	})
	if err != nil {
		log.fail(&log.streamErrs, "%s: %v", host, err)
		return
	}
	defer c.Close()
	sctx, cut := context.WithCancel(ctx)
	defer cut()
	first := make(chan struct{})
	var once sync.Once
	ended := make(chan error, 1)
	go func() {
		ended <- c.Stream(sctx, func(*wire.Netmap, []byte, bool) { once.Do(func() { close(first) }) })
	}()
	select {
	case <-first:
	case err := <-ended:
		log.fail(&log.streamErrs, "%s: stream ended before the first netmap: %v", host, err)
		return
	case <-time.After(30 * time.Second):
		log.fail(&log.streamErrs, "%s: no netmap within 30s", host)
		return
	}
	time.Sleep(life) // the job runs
	if vanish {
		log.exited(churnExit{key: wgPub.String(), at: time.Now()})
		cut()
		<-ended
		return
	}
	at := time.Now()
	if err := c.Leave(ctx, wire.LeaveRequest{Reason: "churn"}); err != nil {
		log.fail(&log.streamErrs, "%s: leave: %v", host, err)
	}
	log.exited(churnExit{key: wgPub.String(), at: at, clean: true})
	<-ended
}

// realRunner is one latchd runner with memory state: up with the
// ephemeral key, seen by every observer, then SIGTERM (clean) or SIGKILL.
func realRunner(t *testing.T, ctx context.Context, bins cluster.Binaries, h *netns.Host, coord *cluster.Coordinator, observers []*cluster.Agent, key string, clean bool, log *churnLog) {
	a := cluster.StartAgent(t, bins, h, coord, "--state", "mem")
	start := time.Now()
	res, err := a.TryUp(ctx, key)
	if err != nil {
		log.fail(&log.enrollErrs, "%s (latchd): %v %s", h.Name, err, res.Stderr)
		a.Proc().Kill()
		return
	}
	st, err := a.Status(ctx)
	if err != nil || st.Self == nil || len(st.Self.Addresses) == 0 {
		log.fail(&log.enrollErrs, "%s (latchd): status after up: %+v %v", h.Name, st, err)
		a.Proc().Kill()
		return
	}
	log.enrolled(st.Self.ID, st.Self.Addresses[0].Addr(), st.Self.Key, time.Since(start))
	err = netns.Poll(30*time.Second, func() error {
		for _, o := range observers {
			keys, err := o.WGPeers(ctx)
			if err != nil {
				return err
			}
			if !slices.Contains(keys, st.Self.Key) {
				return fmt.Errorf("%s does not list %s yet", o.Host.Name, h.Name)
			}
		}
		return nil
	})
	if err != nil {
		log.fail(&log.streamErrs, "%s (latchd): %v", h.Name, err)
	}
	at := time.Now()
	if clean {
		a.Proc().Signal(syscall.SIGTERM)
		a.Proc().Wait(ctx)
	} else {
		a.Proc().Kill()
	}
	log.exited(churnExit{key: st.Self.Key, at: at, clean: clean, real: true})
	// The next cycle waits until this runner is gone from the observers,
	// so every exit is measured on its own.
	netns.Poll(2*time.Minute, func() error {
		for _, o := range observers {
			keys, err := o.WGPeers(ctx)
			if err != nil {
				return err
			}
			if slices.Contains(keys, st.Self.Key) {
				return fmt.Errorf("%s still lists %s", o.Host.Name, h.Name)
			}
		}
		return nil
	})
}
