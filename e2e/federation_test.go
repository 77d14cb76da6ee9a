package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/internal/oidctest"
	"github.com/latchnet/latch/wire"
)

// fedPolicy lets CI runners reach the web service's echo port and nothing
// else; the database is out of their reach (and out of their sight).
const fedPolicy = `{
  "tagOwners": {"tag:ci": [], "tag:web": [], "tag:db": []},
  "rules": [
    {"src": ["tag:ci"], "dst": ["tag:web:7001"]},
  ],
  "tests": [
    {"src": "tag:ci", "accept": ["tag:web:7001"], "deny": ["tag:db:7001", "tag:web:22"]},
  ],
}`

const fedSub = "repo:acme/app:ref:refs/heads/main"

// fedNet is a coordinator trusting a loopback-style OIDC issuer that runs
// inside the coordinator's namespace, a web and a db host, and a runner.
type fedNet struct {
	coord       *cluster.Coordinator
	iss         *oidctest.Issuer
	web, db     *cluster.Agent
	webIP, dbIP netip.Addr
	runner      *netns.Host
	fingerprint string
}

func startFedNet(t *testing.T) *fedNet {
	bins := setup(t)
	n := netns.NewNetwork(t)
	coordHost := n.AddHost("coord")
	// The issuer listens inside the coordinator's namespace, on its
	// address: the coordinator reaches it like any HTTPS issuer.
	ln, err := coordHost.Listen("tcp", netip.AddrPortFrom(coordHost.IP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	iss, err := oidctest.Start(oidctest.Options{Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { iss.Close() })
	caFile := filepath.Join(coordHost.Dir, "oidc-ca.pem")
	if err := os.WriteFile(caFile, iss.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	f := &fedNet{iss: iss}
	f.coord = cluster.StartCoordinator(t, bins, coordHost, "--oidc-ca-file", caFile)
	f.coord.SetPolicy(t, fedPolicy)
	f.fingerprint = caFingerprint(t, f.coord.CAFile())

	for _, name := range []string{"web", "db"} {
		h := n.AddHost(name)
		startEcho(t, h)
		a := cluster.StartAgent(t, bins, h, f.coord)
		a.Up(t, f.coord.CreateKey(t, "--tags", "tag:"+name).Key)
		if name == "web" {
			f.web, f.webIP = a, a.OverlayIPv4(t)
		} else {
			f.db, f.dbIP = a, a.OverlayIPv4(t)
		}
	}
	f.runner = n.AddHost("runner")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := f.coord.Admin(ctx, "trust", "create", "--name", "gha-deploy", "--issuer", iss.URL, "--audience", "latch",
		"--claim", "sub="+fedSub, "--claim", "repository_owner=acme", "--tags", "tag:ci", "--ephemeral", "--max-lifetime", "1h")
	if err != nil {
		t.Fatalf("latch trust create: %v: %s", err, res.Stderr)
	}
	t.Logf("latch trust create:\n%s", res.Stdout)
	return f
}

// caFingerprint is "sha256:<hex>" of the CA certificate in a PEM file.
func caFingerprint(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	return wire.FormatFingerprint(sha256.Sum256(blk.Bytes))
}

// tokenFile signs a fresh CI token and writes it to a file on the runner.
func (f *fedNet) tokenFile(t *testing.T, name string, mod func(map[string]any)) string {
	t.Helper()
	c := f.iss.Claims(fedSub, "latch")
	c["repository_owner"] = "acme"
	if mod != nil {
		mod(c)
	}
	tok, err := f.iss.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(f.runner.Dir, name)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// upArgs is `latch up` with an ID token file.
func (f *fedNet) upArgs(a *cluster.Agent, tokenFile string) []string {
	return []string{a.Bins.Path(cluster.CLIBin), "up", "--coordinator", f.coord.URL, "--id-token-file", tokenFile,
		"--ca-fingerprint", f.fingerprint, "--hostname", "runner", "--ephemeral"}
}

func TestFederatedRunnerGetsTagCIAndReachesOnlyItsService(t *testing.T) {
	f := startFedNet(t)
	runner := cluster.StartAgent(t, bins, f.runner, f.coord)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Without the CA pin, no enrollment (no trust on first use).
	tf := f.tokenFile(t, "token-0", nil)
	args := f.upArgs(runner, tf)
	res, err := f.runner.RunEnv(ctx, runner.Env(), args[:len(args)-5]...) // drop --ca-fingerprint FP --hostname runner --ephemeral
	if err == nil || !strings.Contains(res.Stderr, "ca-fingerprint") {
		t.Fatalf("latch up without --ca-fingerprint: err %v, stderr %q", err, res.Stderr)
	}
	// A token for another repository matches no rule: refused, audited.
	bad := f.tokenFile(t, "token-bad", func(c map[string]any) { c["sub"] = "repo:evil/app:ref:refs/heads/main" })
	res, err = f.runner.RunEnv(ctx, runner.Env(), f.upArgs(runner, bad)...)
	if err == nil || !strings.Contains(res.Stderr, "match no trust rule") {
		t.Fatalf("latch up with a foreign token: err %v, stderr %q", err, res.Stderr)
	}

	res, err = f.runner.RunEnv(ctx, runner.Env(), f.upArgs(runner, tf)...)
	if err != nil {
		t.Fatalf("latch up --id-token-file: %v: %s", err, res.Stderr)
	}
	t.Logf("latch up printed: %s", strings.TrimSpace(res.Stdout))
	nodes, err := f.coord.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var self wire.NodeInfo
	for _, nd := range nodes {
		if nd.Hostname == "runner" {
			self = nd
		}
	}
	if !slices.Equal(self.Tags, []wire.Tag{"tag:ci"}) || !self.Ephemeral || self.TrustRule != "gha-deploy" {
		t.Fatalf("runner node = tags %v ephemeral %v trust rule %q; want tag:ci, ephemeral, gha-deploy", self.Tags, self.Ephemeral, self.TrustRule)
	}
	if d := time.Until(self.KeyExpiry); d <= 50*time.Minute || d > time.Hour+time.Minute {
		t.Fatalf("runner key expiry in %v, want about the rule's 1h", d)
	}

	// It reaches the web echo, sees only web, and cannot reach the db.
	netns.Eventually(t, 30*time.Second, func() error {
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return tcpEcho(c, f.runner, f.webIP, []byte("ci-to-web"))
	})
	st := runner.WaitPeers(t, 30*time.Second, "web")
	if names := st.PeerNames(); !slices.Equal(names, []string{"web"}) {
		t.Fatalf("runner sees peers %v, want only web", names)
	}
	dctx, dcancel := context.WithTimeout(ctx, 3*time.Second)
	defer dcancel()
	if err := tcpEcho(dctx, f.runner, f.dbIP, []byte("ci-to-db")); err == nil {
		t.Fatal("the runner reached the database, which no rule allows")
	}

	// The same token again (a replay after its runner enrolled), from a
	// fresh agent: refused.
	runner.Stop()
	os.RemoveAll(runner.StateDir)
	runner.Start(t)
	res, err = f.runner.RunEnv(ctx, runner.Env(), f.upArgs(runner, tf)...)
	if err == nil || !strings.Contains(res.Stderr, "already used") {
		t.Fatalf("replayed token: err %v, stderr %q", err, res.Stderr)
	}
	// Every refusal above is in the audit log, with its reason.
	out, err := f.coord.Admin(ctx, "audit", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{"match no trust rule", "already used"} {
		if !strings.Contains(out.Stdout, reason) {
			t.Errorf("audit log lacks a refusal with %q", reason)
		}
	}
}

// TestFederatedUpToFirstPacket measures, over fresh runners, the time
// from `latch up --id-token-file` to the first UDP echo from the web
// service over the overlay. Each run is a fresh agent (state wiped) with
// a fresh token, as a CI job would be.
func TestFederatedUpToFirstPacket(t *testing.T) {
	f := startFedNet(t)
	runs := 20
	if s := os.Getenv("LATCH_FED_RUNS"); s != "" {
		runs, _ = strconv.Atoi(s)
	}
	runner := cluster.StartAgent(t, bins, f.runner, f.coord)
	var took []time.Duration
	for i := range runs {
		if i > 0 {
			// A fresh runner: the previous (ephemeral) one exits and
			// its state is gone.
			if err := runner.Stop(); err != nil {
				t.Fatal(err)
			}
			os.RemoveAll(runner.StateDir)
			runner.Start(t)
		}
		tf := f.tokenFile(t, fmt.Sprintf("token-%d", i), nil)
		d := upToFirstEcho(t, f, runner, tf)
		took = append(took, d)
	}
	slices.Sort(took)
	p50, p95 := took[len(took)/2], took[len(took)*95/100]
	labels := []string{"runs=" + strconv.Itoa(runs)}
	metric(t, "federated_up_to_first_packet_p50_ms", p50.Milliseconds(), labels...)
	metric(t, "federated_up_to_first_packet_p95_ms", p95.Milliseconds(), labels...)
	metric(t, "federated_up_to_first_packet_max_ms", took[len(took)-1].Milliseconds(), labels...)
	if p95 > 20*time.Second {
		t.Fatalf("p95 %v from latch up --id-token to the first packet; the goal is 2s", p95)
	}
}

// upToFirstEcho runs latch up with the token while probing the web echo
// over UDP from the runner, and returns the time to the first echo.
func upToFirstEcho(t *testing.T, f *fedNet, runner *cluster.Agent, tokenFile string) time.Duration {
	t.Helper()
	pc, err := f.runner.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.webIP, echoPort))
	first := make(chan time.Time, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		probe := []byte("federated-first-packet")
		buf := make([]byte, 64)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = pc.WriteTo(probe, dst) // "network unreachable" until the overlay exists
			pc.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
			if n, _, err := pc.ReadFrom(buf); err == nil && bytes.Equal(buf[:n], probe) {
				first <- time.Now()
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	res, err := f.runner.RunEnv(ctx, runner.Env(), f.upArgs(runner, tokenFile)...)
	if err != nil {
		t.Fatalf("latch up --id-token-file: %v: %s", err, res.Stderr)
	}
	select {
	case at := <-first:
		return at.Sub(start)
	case <-time.After(30 * time.Second):
		t.Fatalf("no echo from web within 30s of latch up --id-token-file")
	}
	return 0
}
