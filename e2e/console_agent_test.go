package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/wire"
)

// consoleBrowser is headless Chromium driven by chromedp, with the
// helpers a console test needs.
type consoleBrowser struct {
	t   *testing.T
	ctx context.Context
}

// newConsoleBrowser starts Chromium trusting exactly the TLS key pinned
// by spki; it is stopped when the test ends.
func newConsoleBrowser(t *testing.T, spki string) *consoleBrowser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	ctx, cancel := context.WithTimeout(bctx, 4*time.Minute)
	t.Cleanup(func() { cancel(); bcancel(); acancel() })
	b := &consoleBrowser{t: t, ctx: ctx}
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return b
}

// run does steps, failing the test with the page's location and text.
func (b *consoleBrowser) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	sctx, scancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer scancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		body, _ := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("body")))
		b.t.Fatalf("%s: %v (at %s: %.600s)", what, err, loc, body)
	}
}

// text is the text of the element sel.
func (b *consoleBrowser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("reading %s: %v", sel, err)
	}
	return s
}

// mark sets a variable in the page: if it is still there later, the page
// was not reloaded.
func (b *consoleBrowser) mark(v int) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](fmt.Sprintf("window.__noReload = %d; true", v))(ctx, tg)
		return err
	})
}

// waitFor polls a JavaScript condition in the page (no reloads).
func (b *consoleBrowser) waitFor(what, js string) {
	b.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](js))
		if err != nil {
			b.t.Fatalf("evaluating %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond) // the poll interval, not a wait for an event
	}
}

// forwardInto listens on a free loopback port of the root namespace and
// relays every connection to addr as dialled from inside h: the browser
// (root namespace) reaches a coordinator that agents reach on the
// namespace bridge. It returns the listening address; the relay stops,
// and waits for its goroutines, when the test ends.
func forwardInto(t *testing.T, h *netns.Host, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	conns := map[net.Conn]bool{}
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil {
			c.Close()
			return false
		}
		conns[c] = true
		return true
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				up, err := h.DialContext(ctx, "tcp", addr)
				if err != nil || !track(c) {
					return
				}
				defer up.Close()
				if !track(up) {
					return
				}
				done := make(chan struct{}, 2)
				go func() { io.Copy(up, c); done <- struct{}{} }()
				go func() { io.Copy(c, up); done <- struct{}{} }()
				<-done
				up.Close()
				c.Close()
				<-done
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestConsoleWithRealAgent runs the coordinator in a network namespace
// with a real latchd in another: the enrollment key is created in the
// browser, `latch up` enrolls the agent with it and the node appears
// without a reload; `latch access request` through the agent's socket
// appears live, is approved in the console and counts down; revoking the
// node in the console removes it from the page and from the API.
// The nodes page filters the agent by its reported posture.
// Chromium runs in the root namespace and reaches the coordinator through
// a loopback relay that dials from inside the coordinator's namespace.
func TestConsoleWithRealAgent(t *testing.T) {
	bins := setup(t)
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("skipping: %s not installed (scripts/install-deps installs chromium)", chromiumPath)
	}
	start := time.Now()
	n := netns.NewNetwork(t)
	coordHost := n.AddHost("coord")
	coord := cluster.StartCoordinator(t, bins, coordHost, "--console-host", "127.0.0.1")
	coord.SetPolicy(t, consolePolicy)
	tokenB, err := os.ReadFile(coord.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	bootstrap := strings.TrimSpace(string(tokenB))
	local := forwardInto(t, coordHost, strings.TrimPrefix(coord.URL, "https://"))
	base := "https://" + local + "/console"
	b := newConsoleBrowser(t, (&loopbackCoordinator{DataDir: coord.DataDir}).spkiPin(t))

	b.run("opening the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#setup-form")))
	b.run("setting up",
		chromedp.SendKeys(chromedp.CSS("#token"), bootstrap),
		chromedp.SendKeys(chromedp.CSS("#username"), consoleUser),
		chromedp.SendKeys(chromedp.CSS("#password"), consolePassword),
		chromedp.SendKeys(chromedp.CSS("#password2"), consolePassword),
		chromedp.Click(chromedp.CSS("#setup")),
		chromedp.WaitVisible(chromedp.CSS("#ov-nodes")))

	// The enrollment key, created in the console.
	b.run("creating a key", chromedp.Navigate(base+"/keys"), chromedp.WaitVisible(chromedp.CSS("#key-form")),
		chromedp.SendKeys(chromedp.CSS("#key-description"), "real agent"),
		chromedp.SetValue(chromedp.CSS("#key-kind"), "one-off"),
		chromedp.SendKeys(chromedp.CSS("#key-tags"), "tag:ci"),
		chromedp.Click(chromedp.CSS("#create-key")),
		chromedp.WaitVisible(chromedp.CSS("#new-key")))
	key := strings.TrimSpace(b.text("#new-key"))
	if _, err := wire.ParseAuthKey(key); err != nil {
		t.Fatalf("the console showed %q, not an enrollment key: %v", key, err)
	}

	// latch up with it on a real agent: the node appears without a reload.
	b.run("opening nodes", chromedp.Navigate(base+"/nodes"), chromedp.WaitVisible(chromedp.CSS("#nodes-body")), b.mark(61))
	agent := cluster.StartAgent(t, bins, n.AddHost("runner"), coord)
	tUp := time.Now()
	agent.Up(t, key)
	st := agent.WaitConnected(t, 0, 30*time.Second)
	id := st.Self.ID
	b.waitFor("the agent's node online", fmt.Sprintf(`(function(){var r=document.querySelector('tr[data-node-id=%q]');return !!r && r.textContent.indexOf('online')>=0 && r.textContent.indexOf('offline')<0 && window.__noReload === 61})()`, id))
	t.Logf("latch up to the node online in the console: %v", time.Since(tUp).Round(time.Millisecond))

	// The agent reported its posture: the nodes page filters by it.
	row := fmt.Sprintf(`!!document.querySelector('tr[data-node-id=%q]')`, id)
	b.run("filtering by posture", chromedp.Navigate(base+"/nodes?posture=os%3Dlinux"), chromedp.WaitVisible(chromedp.CSS("#nodes-body")))
	if ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](row)); err != nil || !ok {
		t.Fatalf("posture os=linux does not list the linux agent (%v)", err)
	}
	b.run("filtering by another posture", chromedp.Navigate(base+"/nodes?posture=os%3Ddarwin"), chromedp.WaitVisible(chromedp.CSS("#nodes-body")))
	if ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](row)); err != nil || ok {
		t.Fatalf("posture os=darwin lists the linux agent (%v)", err)
	}

	// latch access request through the agent's socket; approve it in the
	// console and watch it count down.
	b.run("opening access", chromedp.Navigate(base+"/access"), chromedp.WaitVisible(chromedp.CSS("#pending")), b.mark(62))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := agent.CLI(ctx, "access", "request", "--to", "svc:db", "--for", "2m", "--reason", "real agent test", "--json")
	if err != nil {
		t.Fatalf("latch access request: exit %d: %s", res.Code, strings.TrimSpace(res.Stderr))
	}
	var ar wire.AccessRequest
	if err := json.Unmarshal([]byte(res.Stdout), &ar); err != nil || ar.ID == "" || ar.State != wire.AccessPending {
		t.Fatalf("latch access request printed %q (%v), want a pending request", res.Stdout, err)
	}
	b.waitFor("the request live", fmt.Sprintf(`!!document.querySelector('[data-approve=%q]') && window.__noReload === 62`, ar.ID))
	b.run("approving", chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-approve=%q]`, ar.ID))),
		chromedp.WaitVisible(chromedp.CSS("#flash")), chromedp.WaitVisible(chromedp.CSS("#active .countdown")))
	first := b.text("#active .countdown")
	b.waitFor("the countdown to move", fmt.Sprintf(`document.querySelector('#active .countdown').textContent !== %q`, first))
	if got := b.text("#active .countdown"); !strings.Contains(got, "1m ") {
		t.Fatalf("the 2m grant's countdown shows %q", got)
	}

	// Revoke the node in the console: it goes from the list and the API.
	b.run("revoking the node", chromedp.Navigate(base+"/nodes/"+id), chromedp.WaitVisible(chromedp.CSS("#revoke")),
		chromedp.Click(chromedp.CSS("#revoke")), chromedp.WaitVisible(chromedp.CSS("#confirm-revoke")))
	b.run("confirming", chromedp.Click(chromedp.CSS("#confirm-revoke")), chromedp.WaitVisible(chromedp.CSS("#flash")))
	b.waitFor("the node gone", fmt.Sprintf(`!!document.getElementById('nodes-body') && !document.querySelector('tr[data-node-id=%q]')`, id))
	netns.Eventually(t, 30*time.Second, func() error {
		nodes, err := coord.Nodes(ctx)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if string(n.ID) == id {
				return fmt.Errorf("latch nodes list still lists %s", id)
			}
		}
		return nil
	})
	t.Logf("TestConsoleWithRealAgent took %v", time.Since(start).Round(time.Millisecond))
}
