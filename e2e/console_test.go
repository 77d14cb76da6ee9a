package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/latchnet/latch/agent/control"
	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/internal/oidctest"
	"github.com/latchnet/latch/wire"
)

// chromiumPath is Debian's chromium, installed by scripts/install-deps.
const chromiumPath = "/usr/bin/chromium"

// consoleUser is the console owner the browser test creates; the policy
// names it as the approver of svc:db requests.
const (
	consoleUser     = "admin@example.com"
	consolePassword = "correct horse battery staple"
)

// consolePolicyInvalid has an error on line 3 (an unknown selector kind).
const consolePolicyInvalid = `{
  "rules": [
    {"src": ["nonsense:x"], "dst": ["tag:db:5432"]},
  ],
}
`

const consolePolicy = `// The console browser test's policy.
{
  "tagOwners": {"tag:ci": [], "tag:db": []},
  "services": {"svc:db": {"tags": ["tag:db"], "ports": ["5432/tcp"]}},
  "rules": [],
  "access": [
    {"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["admin@example.com"], "maxDuration": "1h"},
  ],
}
`

// consolePolicySSH is consolePolicy plus ssh between CI runners: saving
// it gains a pair each way between two runners.
var consolePolicySSH = strings.Replace(consolePolicy, `"rules": [],`, `"rules": [
    {"src": ["tag:ci"], "dst": ["tag:ci:22/tcp"]},
  ],`, 1)

// loopbackCoordinator is a latch-coordinator process on 127.0.0.1.
type loopbackCoordinator struct {
	URL, DataDir string
	Pool         *x509.CertPool
}

// startLoopbackCoordinator runs the real coordinator binary on a free
// loopback port; it is stopped (by its PID) when the test ends.
func startLoopbackCoordinator(t *testing.T, bins cluster.Binaries, extra ...string) *loopbackCoordinator {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "coordinator.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins.Path(cluster.CoordinatorBin), "serve", "--listen", addr, "--data-dir", filepath.Join(dir, "data"),
		"--log-level", "debug")
	cmd.Args = append(cmd.Args, extra...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("coordinator log:\n%s", b)
		}
	})
	c := &loopbackCoordinator{URL: "https://" + addr, DataDir: filepath.Join(dir, "data")}
	netns.Eventually(t, cluster.StartTimeout, func() error {
		select {
		case <-done:
			return netns.Permanent(errors.New("coordinator exited"))
		default:
		}
		pemCA, err := os.ReadFile(filepath.Join(c.DataDir, "ca.crt"))
		if err != nil {
			return err
		}
		c.Pool = x509.NewCertPool()
		c.Pool.AppendCertsFromPEM(pemCA)
		resp, err := c.client().Get(c.URL + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz: %s", resp.Status)
		}
		return nil
	})
	return c
}

func (c *loopbackCoordinator) client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.Pool, MinVersion: tls.VersionTLS13}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// spkiPin is the base64 SHA-256 of the coordinator's TLS key: the browser
// trusts exactly that key (--ignore-certificate-errors-spki-list) and no
// other untrusted certificate.
func (c *loopbackCoordinator) spkiPin(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.DataDir, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("tls.crt: no PEM block")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// issuerSPKIPin is the base64 SHA-256 of the test issuer's server key
// (for --ignore-certificate-errors-spki-list, which matches the leaf),
// read from a TLS handshake verified against the issuer's CA.
func issuerSPKIPin(t *testing.T, iss *oidctest.Issuer) string {
	t.Helper()
	c, err := tls.Dial("tcp", strings.TrimPrefix(iss.URL, "https://"), &tls.Config{RootCAs: iss.CAPool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sum := sha256.Sum256(c.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// browserNode is a node enrolled and streaming through the control
// protocol (what an agent does), without a data plane.
type browserNode struct {
	en     *control.Enrollment
	client *control.Client
	cancel context.CancelFunc
	done   chan struct{}
}

func enrollBrowserNode(t *testing.T, c *loopbackCoordinator, key, host string) *browserNode {
	t.Helper()
	var wg wire.NodePublic
	rand.Read(wg[:])
	_, ck, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, ck)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	en, err := control.Enroll(ctx, c.URL, wire.EnrollRequest{AuthKey: key, Hostname: host, WireGuardKey: wg, CSR: csr})
	if err != nil {
		t.Fatalf("enrolling %s: %v", host, err)
	}
	tc := &tls.Certificate{Certificate: [][]byte{en.Cert.Raw}, PrivateKey: ck, Leaf: en.Cert}
	cl, err := control.NewClient(control.ClientConfig{BaseURL: c.URL, CA: en.CA, NodeID: en.Node.ID, NetmapKey: en.NetmapKey,
		Certificate: func() (*tls.Certificate, error) { return tc, nil }})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	n := &browserNode{en: en, client: cl, cancel: scancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		cl.Stream(sctx, func(*wire.Netmap, []byte, bool) {})
	}()
	t.Cleanup(n.stop)
	return n
}

func (n *browserNode) stop() {
	n.cancel()
	<-n.done
	n.client.Close()
}

// TestConsoleInBrowser drives the web console in headless Chromium
// against the real coordinator binary: setup with the bootstrap token, a
// policy error shown at its line, a saved policy with its pairs diff, an
// enrollment key shown once, a node appearing and going offline without a
// reload, an access request approved with its countdown running, a node
// revoked, sign-out. With LATCH_CONSOLE_SCREENSHOTS=1 it saves a
// screenshot of every page into docs/console/.
func TestConsoleInBrowser(t *testing.T) {
	bins := setup(t)
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("skipping: %s not installed (scripts/install-deps installs chromium)", chromiumPath)
	}
	// A test OIDC issuer on loopback: the console's second way to sign in.
	iss, err := oidctest.Start(oidctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	iss.SetClient("latch-console", "console-secret")
	iss.SetUser("sub-audrey", map[string]any{"email": "audrey@example.com"})
	oidcDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(oidcDir, "ca.pem"), iss.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(oidcDir, "secret"), []byte("console-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	coord := startLoopbackCoordinator(t, bins, "--oidc-ca-file", filepath.Join(oidcDir, "ca.pem"),
		"--console-oidc-issuer", iss.URL, "--console-oidc-client-id", "latch-console",
		"--console-oidc-client-secret-file", filepath.Join(oidcDir, "secret"))
	tokenB, err := os.ReadFile(filepath.Join(coord.DataDir, "bootstrap-token"))
	if err != nil {
		t.Fatal(err)
	}
	bootstrap := strings.TrimSpace(string(tokenB))

	b := newConsoleBrowser(t, coord.spkiPin(t)+","+issuerSPKIPin(t, iss))
	ctx, run, text, mark, waitFor := b.ctx, b.run, b.text, b.mark, b.waitFor
	shots := os.Getenv("LATCH_CONSOLE_SCREENSHOTS") == "1"
	shotDir := filepath.Join("..", "docs", "console")
	shot := func(name string) {
		t.Helper()
		if !shots {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shotDir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := coord.URL + "/console"
	// Setup: the first owner, with the one-time bootstrap token.
	run("opening the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#setup-form")))
	shot("setup")
	run("setting up",
		chromedp.SendKeys(chromedp.CSS("#token"), bootstrap),
		chromedp.SendKeys(chromedp.CSS("#username"), consoleUser),
		chromedp.SendKeys(chromedp.CSS("#password"), consolePassword),
		chromedp.SendKeys(chromedp.CSS("#password2"), consolePassword),
		chromedp.Click(chromedp.CSS("#setup")),
		chromedp.WaitVisible(chromedp.CSS("#ov-nodes")))
	if got := text("#whoami"); !strings.Contains(got, consoleUser) || !strings.Contains(got, "owner") {
		t.Fatalf("signed in as %q, want %s (owner)", got, consoleUser)
	}

	// Policy: an invalid one shows its error at line 3; a valid one saves
	// with the pairs it gains.
	run("opening policy", chromedp.Navigate(base+"/policy"), chromedp.WaitVisible(chromedp.CSS("#policy-source")))
	// As it is typed, the editor checks the policy with the API's dry run.
	run("typing an invalid policy",
		chromedp.SetValue(chromedp.CSS("#policy-source"), consolePolicyInvalid),
		chromedp.SendKeys(chromedp.CSS("#policy-source"), " "),
		chromedp.WaitVisible(chromedp.CSS("#policy-live.live-error")))
	if got := text("#policy-live"); !strings.Contains(got, "line 3") {
		t.Fatalf("live check %q does not name line 3", got)
	}
	run("checking an invalid policy",
		chromedp.SetValue(chromedp.CSS("#policy-source"), consolePolicyInvalid),
		chromedp.Click(chromedp.CSS("#policy-check")),
		chromedp.WaitVisible(chromedp.CSS("#error")))
	if got := text("#error"); !strings.Contains(got, "line 3") {
		t.Fatalf("policy error %q does not name line 3", got)
	}
	if got := text("#error-at"); !strings.Contains(got, "line 3") {
		t.Fatalf("policy error position %q", got)
	}
	shot("policy-error")
	run("saving a valid policy",
		chromedp.SetValue(chromedp.CSS("#policy-source"), consolePolicy),
		chromedp.Click(chromedp.CSS("#policy-save")),
		chromedp.WaitVisible(chromedp.CSS("#policy-diff")))
	if got := text("#policy-diff h2"); !strings.Contains(got, "version 1") {
		t.Fatalf("after save: %q, want version 1", got)
	}

	// Keys: a reusable tag:ci key, shown once.
	run("creating a key", chromedp.Navigate(base+"/keys"), chromedp.WaitVisible(chromedp.CSS("#key-form")),
		chromedp.SendKeys(chromedp.CSS("#key-description"), "browser test"),
		chromedp.SetValue(chromedp.CSS("#key-kind"), "reusable"),
		chromedp.SendKeys(chromedp.CSS("#key-tags"), "tag:ci"),
		chromedp.Click(chromedp.CSS("#create-key")),
		chromedp.WaitVisible(chromedp.CSS("#new-key")))
	key := strings.TrimSpace(text("#new-key"))
	if _, err := wire.ParseAuthKey(key); err != nil {
		t.Fatalf("the console showed %q, not an enrollment key: %v", key, err)
	}
	shot("keys")
	run("reloading keys", chromedp.Navigate(base+"/keys"), chromedp.WaitVisible(chromedp.CSS("#keys-table")))
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html, key) || strings.Contains(html, "new-key") {
		t.Fatal("the enrollment key is shown again after a reload")
	}

	// Nodes: a node enrolling appears, online, without a reload; going
	// away turns it offline.
	run("opening nodes", chromedp.Navigate(base+"/nodes"), chromedp.WaitVisible(chromedp.CSS("#nodes-body")),
		mark(42))
	node := enrollBrowserNode(t, coord, key, "ci-runner-1")
	id := string(node.en.Node.ID)
	rowOnline := fmt.Sprintf(`(function(){var r=document.querySelector('tr[data-node-id=%q]');return !!r && r.textContent.indexOf('online')>=0 && r.textContent.indexOf('offline')<0})()`, id)
	waitFor("the new node online", rowOnline)
	waitFor("no reload", `window.__noReload === 42`)
	node2 := enrollBrowserNode(t, coord, key, "ci-runner-2")
	waitFor("the second node", fmt.Sprintf(`!!document.querySelector('tr[data-node-id=%q]') && window.__noReload === 42`, node2.en.Node.ID))
	shot("nodes")
	// Policy again: the preview shows the pairs a change gains, the save
	// makes version 2, and version 1 can be restored.
	run("previewing ssh between runners", chromedp.Navigate(base+"/policy"), chromedp.WaitVisible(chromedp.CSS("#policy-source")),
		chromedp.SetValue(chromedp.CSS("#policy-source"), consolePolicySSH),
		chromedp.Click(chromedp.CSS("#policy-check")),
		chromedp.WaitVisible(chromedp.CSS("#policy-diff")))
	if got := text("#gained"); !strings.Contains(got, "ci-runner-1 → ci-runner-2") || !strings.Contains(got, "22") {
		t.Fatalf("preview gains %q, want ci-runner-1 → ci-runner-2 tcp/22", got)
	}
	if got := text("#policy-diff h2"); !strings.Contains(got, "Preview") {
		t.Fatalf("check saved something: %q", got)
	}
	run("saving it", chromedp.Click(chromedp.CSS("#policy-save")))
	waitFor("the save", `(function(){var h=document.querySelector('#policy-diff h2');return !!h && h.textContent.indexOf('version 2')>=0})()`)
	shot("policy")
	run("opening topology", chromedp.Navigate(base+"/topology"), chromedp.WaitVisible(chromedp.CSS("#topology")))
	if got := text("#pairs"); !strings.Contains(got, "ci-runner-1\tci-runner-2\ttcp/22") {
		t.Fatalf("topology pairs %q, want ci-runner-1 → ci-runner-2 tcp/22", got)
	}
	shot("topology")
	// Each node's page lists whom it may reach and who may reach it.
	run("opening runner 1", chromedp.Navigate(base+"/nodes/"+id), chromedp.WaitVisible(chromedp.CSS("#may-reach")))
	if got := text("#may-reach"); !strings.Contains(got, "ci-runner-2\ttcp/22") {
		t.Fatalf("runner 1 may reach %q, want ci-runner-2 tcp/22", got)
	}
	shot("node")
	run("opening runner 2", chromedp.Navigate(base+"/nodes/"+string(node2.en.Node.ID)), chromedp.WaitVisible(chromedp.CSS("#reachable-from")))
	if got := text("#reachable-from"); !strings.Contains(got, "ci-runner-1\ttcp/22") {
		t.Fatalf("runner 2 reachable from %q, want ci-runner-1 tcp/22", got)
	}
	run("back to policy", chromedp.Navigate(base+"/policy"), chromedp.WaitVisible(chromedp.CSS("#versions")))
	run("restoring version 1", chromedp.Click(chromedp.CSS(`form[action$="/versions/1/restore"] button`)))
	waitFor("the restore", `(function(){var f=document.getElementById('flash');return !!f && f.textContent.indexOf('restored')>=0})()`)
	if got := text("#versions"); !strings.Contains(got, "3 current") {
		t.Fatalf("after restoring: versions %q, want 3 current", got)
	}
	run("opening overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#ov-online")), mark(45))
	waitFor("overview counts", `document.getElementById('ov-online').textContent === '2'`)
	// Runner 2 reports a dropped connection attempt from runner 1: the
	// overview shows it without a reload,
	// the flows page lists it.
	now := time.Now()
	fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = node2.client.ReportFlows(fctx, wire.FlowReport{Flows: []wire.FlowSummary{{
		Direction: "in", Src: node.en.Node.Addresses[0].Addr(), Dst: node2.en.Node.Addresses[0].Addr(),
		SrcNode: node.en.Node.ID, DstNode: node2.en.Node.ID, Proto: wire.ProtoTCP, DstPort: 5432,
		Verdict: wire.FlowDrop, Reason: "no-rule", Packets: 3, Bytes: 180, First: now.Add(-2 * time.Second), Last: now,
	}}})
	fcancel()
	if err != nil {
		t.Fatalf("reporting a flow: %v", err)
	}

	waitFor("the denied flow live", `document.getElementById('denied-flows').textContent.indexOf('tcp/5432') >= 0 && window.__noReload === 45`)
	shot("overview")
	run("opening the node", chromedp.Navigate(base+"/nodes/"+id), chromedp.WaitVisible(chromedp.CSS("#node-props")))
	if got := text("#node-props"); !strings.Contains(got, "tag:ci") || !strings.Contains(got, "ci-runner-1") {
		t.Fatalf("node page: %q", got)
	}

	// Access: the node asks for svc:db; the request appears live; approve
	// it and watch the grant count down.
	run("opening access", chromedp.Navigate(base+"/access"), chromedp.WaitVisible(chromedp.CSS("#pending")),
		mark(43))
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	req, err := node.client.RequestAccess(rctx, wire.NodeAccessRequest{To: "svc:db", Duration: 30 * time.Minute, Reason: "browser test migration"})
	rcancel()
	if err != nil {
		t.Fatalf("requesting access: %v", err)
	}
	waitFor("the access request live", fmt.Sprintf(`!!document.querySelector('[data-approve=%q]') && window.__noReload === 43`, req.ID))
	run("approving", chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-approve=%q]`, req.ID))),
		chromedp.WaitVisible(chromedp.CSS("#flash")), chromedp.WaitVisible(chromedp.CSS("#active .countdown")))
	first := text("#active .countdown")
	waitFor("the countdown to move", fmt.Sprintf(`document.querySelector('#active .countdown').textContent !== %q`, first))
	if got := text("#active .countdown"); !strings.Contains(got, "m ") {
		t.Fatalf("countdown shows %q", got)
	}
	shot("access")

	// Audit: the chain verifies; the approval is there with the user.
	run("verifying audit", chromedp.Navigate(base+"/audit"), chromedp.WaitVisible(chromedp.CSS("#audit-verify")),
		chromedp.Click(chromedp.CSS("#audit-verify")), chromedp.WaitVisible(chromedp.CSS("#verify-result")))
	if got := text("#verify-result"); !strings.Contains(got, "intact") {
		t.Fatalf("audit verify: %q", got)
	}
	if got := text("#audit-table"); !strings.Contains(got, "access.approve") || !strings.Contains(got, "console.login") {
		t.Fatalf("audit table lacks the approval or the sign-in: %.500s", got)
	}
	shot("audit")
	run("creating an auditor", chromedp.Navigate(base+"/users"), chromedp.WaitVisible(chromedp.CSS("#user-form")),
		chromedp.SendKeys(chromedp.CSS("#new-username"), "audrey@example.com"),
		chromedp.SendKeys(chromedp.CSS("#new-password"), consolePassword),
		chromedp.SendKeys(chromedp.CSS("#new-password2"), consolePassword),
		chromedp.SendKeys(chromedp.CSS("#new-oidc-subject"), "sub-audrey"),
		chromedp.Click(chromedp.CSS("#create-user")))
	waitFor("the new account", `(function(){var t=document.getElementById('users-table');return !!document.getElementById('flash') && !!t && t.textContent.indexOf('audrey@example.com')>=0 && t.textContent.indexOf('auditor')>=0})()`)
	shot("users")
	run("opening flows", chromedp.Navigate(base+"/flows"), chromedp.WaitVisible(chromedp.CSS("#flows-table")))
	if got := text("#flows-table"); !strings.Contains(got, "no-rule") || !strings.Contains(got, "ci-runner-1") {
		t.Fatalf("flows page lacks the reported drop: %q", got)
	}
	shot("flows")
	run("creating a trust rule", chromedp.Navigate(base+"/trust-rules"), chromedp.WaitVisible(chromedp.CSS("#trust-form")),
		chromedp.SendKeys(chromedp.CSS("#trust-name"), "app-main"),
		chromedp.SendKeys(chromedp.CSS("#trust-issuer"), "https://token.actions.example.com"),
		chromedp.SendKeys(chromedp.CSS("#trust-audience"), "latch"),
		chromedp.SendKeys(chromedp.CSS("#trust-tags"), "tag:ci"),
		chromedp.SetValue(chromedp.CSS("#trust-claims"), "sub=repo:acme/app:ref:refs/heads/main"),
		chromedp.Click(chromedp.CSS("#create-trust")))
	waitFor("the trust rule", `(function(){var t=document.getElementById('trust-table'), f=document.getElementById('flash');return !!t && !!f && t.textContent.indexOf('app-main')>=0})()`)
	shot("trust-rules")
	// A phone-sized screen: the overview still reads (no sideways page).
	run("phone overview", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#ov-nodes")))
	if wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)); err != nil || wide {
		t.Errorf("the overview is wider than a phone's screen (%v)", err)
	}
	shot("phone-overview")
	run("desktop again", chromedp.EmulateReset())

	// The node going away shows offline without a reload; then revoke it.
	run("opening nodes", chromedp.Navigate(base+"/nodes"), chromedp.WaitVisible(chromedp.CSS("#nodes-body")),
		mark(44))
	node.stop()
	waitFor("the node offline", fmt.Sprintf(`(function(){var r=document.querySelector('tr[data-node-id=%q]');return !!r && r.textContent.indexOf('offline')>=0 && window.__noReload === 44})()`, id))
	run("revoking the node", chromedp.Navigate(base+"/nodes/"+id), chromedp.WaitVisible(chromedp.CSS("#revoke")),
		chromedp.Click(chromedp.CSS("#revoke")), chromedp.WaitVisible(chromedp.CSS("#confirm-revoke")))
	shot("node-revoke")
	run("confirming", chromedp.Click(chromedp.CSS("#confirm-revoke")), chromedp.WaitVisible(chromedp.CSS("#flash")))
	waitFor("the node gone", fmt.Sprintf(`!document.querySelector('tr[data-node-id=%q]')`, id))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(strings.SplitN(loc, "?", 2)[0], "/console/nodes") {
		t.Fatalf("after revoke at %s, want the nodes page", loc)
	}

	// Sign out: back to sign-in, and the console is closed.
	run("signing out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	shot("login")
	run("after sign-out", chromedp.Navigate(base+"/nodes"), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	// Sign in again through the OIDC issuer as audrey, bound by subject.
	run("signing in with OIDC", chromedp.Click(chromedp.CSS("#login-oidc")), chromedp.WaitVisible(chromedp.CSS("#ov-nodes")))
	if got := text("#whoami"); !strings.Contains(got, "audrey@example.com") || !strings.Contains(got, "auditor") {
		t.Fatalf("after OIDC sign-in: %q, want audrey@example.com (auditor)", got)
	}
	// The coordinator's API saw the same actions: the node is gone there too.
	var list []wire.NodeInfo
	hreq, _ := http.NewRequest(http.MethodGet, coord.URL+wire.PathNodes, nil)
	hreq.Header.Set("Authorization", "Bearer "+bootstrap)
	resp, err := coord.client().Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	for _, n := range list {
		if string(n.ID) == id {
			t.Fatalf("the API still lists the revoked node %s", id)
		}
	}
	if len(list) != 1 {
		t.Fatalf("the API lists %d nodes, want the second runner only", len(list))
	}
}

// TestConsoleRefusesForgedRequestsOverHTTPS checks the console's request
// guards on the real binary over TLS with a plain HTTP client: a POST
// without the CSRF token, a cross-origin POST and a foreign Host header
// get 403 and create nothing; the same POST done right succeeds.
func TestConsoleRefusesForgedRequestsOverHTTPS(t *testing.T) {
	bins := setup(t)
	coord := startLoopbackCoordinator(t, bins)
	tokenB, err := os.ReadFile(filepath.Join(coord.DataDir, "bootstrap-token"))
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	hc := coord.client()
	hc.Jar = jar
	base := coord.URL + "/console"
	get := func(path string) string {
		t.Helper()
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	post := func(path string, form url.Values, hdr map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", coord.URL)
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
				continue
			}
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	csrfRE := regexp.MustCompile(`<meta name="csrf" content="([^"]+)">`)
	csrfOf := func(page string) string {
		t.Helper()
		m := csrfRE.FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no CSRF token in the page: %.300s", page)
		}
		return m[1]
	}
	pre := csrfOf(get("/setup"))
	if code := post("/setup", url.Values{"csrf": {pre}, "token": {strings.TrimSpace(string(tokenB))}, "username": {consoleUser},
		"password": {consolePassword}, "password2": {consolePassword}}, nil); code != http.StatusSeeOther {
		t.Fatalf("setup: %d", code)
	}
	csrf := csrfOf(get("/keys"))
	keys := func() int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, coord.URL+wire.PathKeys, nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tokenB)))
		resp, err := coord.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list []wire.KeyInfo
		json.NewDecoder(resp.Body).Decode(&list)
		return len(list)
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(coord.URL, "https://"))
	tests := []struct {
		name string
		form url.Values
		hdr  map[string]string
		want int
	}{
		{"no-csrf-token", url.Values{"description": {"x"}}, nil, http.StatusForbidden},
		{"wrong-csrf-token", url.Values{"csrf": {"x" + csrf}}, nil, http.StatusForbidden},
		{"cross-origin", url.Values{"csrf": {csrf}}, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"foreign-host", url.Values{"csrf": {csrf}}, map[string]string{"Host": "evil.example:" + port, "Origin": "https://evil.example:" + port}, http.StatusForbidden},
		{"valid", url.Values{"csrf": {csrf}, "description": {"ok"}}, nil, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := keys()
			if code := post("/keys", tt.form, tt.hdr); code != tt.want {
				t.Fatalf("POST /console/keys: %d, want %d", code, tt.want)
			}
			if created := keys() - before; (tt.want == http.StatusOK) != (created == 1) {
				t.Errorf("%d keys created", created)
			}
		})
	}
}
