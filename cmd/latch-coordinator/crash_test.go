package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// coordinatorProc is one run of the real binary.
type coordinatorProc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{} // closed once the process was reaped; then err is set
	err    error
}

type crashHarness struct {
	t       *testing.T
	bin     string
	dataDir string
	addr    string
	cur     *coordinatorProc
}

func (h *crashHarness) start() {
	h.t.Helper()
	cmd := exec.Command(h.bin, "serve", "--listen", h.addr, "--data-dir", h.dataDir,
		"--trust-domain", "crash.internal", "--log-level", "warn")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	p := &coordinatorProc{cmd: cmd, stderr: &stderr, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	h.cur = p
}

// kill9 kills the running coordinator by its PID with SIGKILL and reaps it.
func (h *crashHarness) kill9() {
	h.t.Helper()
	if err := syscall.Kill(h.cur.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		h.t.Fatalf("kill -9 %d: %v", h.cur.cmd.Process.Pid, err)
	}
	<-h.cur.done
}

// waitHealthy polls /healthz until it answers or the deadline passes.
func (h *crashHarness) waitHealthy(ctx context.Context) {
	h.t.Helper()
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer c.CloseIdleConnections()
	for {
		resp, err := c.Get("https://" + h.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-h.cur.done:
			h.t.Fatalf("coordinator exited (%v) before serving:\n%s", h.cur.err, h.cur.stderr)
		case <-ctx.Done():
			h.t.Fatalf("coordinator not healthy in time:\n%s", h.cur.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go" // where the README installs Go
}

// TestKill9DuringEnrollmentsNeverCorruptsTheStore runs the real binary,
// enrolls nodes concurrently while kill -9'ing it at random moments
// (including during start-up), and then checks the store: it opens,
// passes SQLite's integrity check, no address is held twice, and every
// enrollment that was answered 200 exists.
func TestKill9DuringEnrollmentsNeverCorruptsTheStore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 7))

	h := &crashHarness{t: t, bin: filepath.Join(t.TempDir(), "latch-coordinator"), dataDir: t.TempDir(), addr: freePort(t)}
	build := exec.CommandContext(ctx, goTool(), "build", "-o", h.bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if h.cur == nil {
			return
		}
		select {
		case <-h.cur.done:
		default:
			syscall.Kill(h.cur.cmd.Process.Pid, syscall.SIGKILL)
			<-h.cur.done
		}
	})

	// A crash during the very first start (CA, TLS certificate, bootstrap
	// token, migrations) must leave a directory the next start completes.
	h.start()
	select {
	case <-time.After(time.Duration(rng.IntN(40)) * time.Millisecond):
	case <-ctx.Done():
	}
	h.kill9()
	h.start()
	h.waitHealthy(ctx)

	caPEM, err := os.ReadFile(filepath.Join(h.dataDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tok, err := os.ReadFile(filepath.Join(h.dataDir, "bootstrap-token"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	post := func(path string, hdr map[string]string, in any, out any) (int, error) {
		b, _ := json.Marshal(in)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+h.addr+path, bytes.NewReader(b))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated {
			if err := json.Unmarshal(body, out); err != nil {
				return 0, fmt.Errorf("decoding %s: %w", body, err)
			}
		}
		return resp.StatusCode, nil
	}
	var key wire.CreateKeyResponse
	if status, err := post(wire.PathKeys, map[string]string{"Authorization": "Bearer " + strings.TrimSpace(string(tok))},
		wire.CreateKeyRequest{Reusable: true, Expiry: time.Hour}, &key); err != nil || status != http.StatusCreated {
		t.Fatalf("create key: %d %v", status, err)
	}

	// Enroll concurrently while the coordinator is killed and restarted.
	var (
		mu       sync.Mutex
		enrolled = map[wire.NodeID]wire.Node{}
		failures int
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, priv, _ := ed25519.GenerateKey(rand.Reader)
				csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, priv)
				var wgKey wire.NodePublic
				rand.Read(wgKey[:])
				var resp wire.EnrollResponse
				status, err := post(wire.PathEnroll, map[string]string{wire.HeaderProtocol: "1"}, wire.EnrollRequest{
					AuthKey: key.Key, Hostname: fmt.Sprintf("w%d-%d", w, i), WireGuardKey: wgKey, CSR: csr,
					Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.1:51820")},
				}, &resp)
				mu.Lock()
				if err == nil && status == http.StatusOK {
					enrolled[resp.Node.ID] = resp.Node
				} else {
					failures++
				}
				mu.Unlock()
				if err != nil {
					select { // the coordinator is down; try again shortly
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}
		}()
	}

	const kills = 7
	for i := range kills {
		// Every third kill lands during start-up, the others while serving.
		if i%3 != 2 {
			h.waitHealthy(ctx)
		}
		select {
		case <-time.After(time.Duration(50+rng.IntN(450)) * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("out of time")
		}
		h.kill9()
		h.start()
	}
	h.waitHealthy(ctx)
	// Let the workers get some enrollments through the last run.
	for deadline := time.Now().Add(5 * time.Second); ; {
		mu.Lock()
		n := len(enrolled)
		mu.Unlock()
		if n >= 20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.kill9()
	close(stop)
	wg.Wait()
	t.Logf("%d enrollments answered 200, %d failed, %d kill -9", len(enrolled), failures, kills+2)
	if len(enrolled) == 0 {
		t.Fatal("no enrollment succeeded")
	}

	// The store as the last kill left it.
	st, err := store.OpenSQLite(ctx, filepath.Join(h.dataDir, "latch.db"), store.Options{})
	if err != nil {
		t.Fatalf("store does not open after kill -9: %v", err)
	}
	if err := st.Check(ctx); err != nil {
		t.Fatal(err)
	}
	nodes, err := st.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[wire.NodeID]store.Node{}
	owner := map[string]wire.NodeID{}
	for _, n := range nodes {
		byID[n.ID] = n
		for _, a := range []string{n.IPv4.String(), n.IPv6.String(), "wg:" + n.WireGuardKey.String(), "name:" + n.Name} {
			if other, dup := owner[a]; dup {
				t.Errorf("%s held by both %s and %s", a, other, n.ID)
			}
			owner[a] = n.ID
		}
		if v4 := n.IPv4.As4(); v4[3] == 0 || v4[3] == 255 {
			t.Errorf("node %s got %s", n.ID, n.IPv4)
		}
	}
	for id, want := range enrolled {
		got, ok := byID[id]
		if !ok {
			t.Errorf("node %s was answered 200 but is not in the store", id)
			continue
		}
		if netip.PrefixFrom(got.IPv4, 32) != want.Addresses[0] || netip.PrefixFrom(got.IPv6, 128) != want.Addresses[1] {
			t.Errorf("node %s: stored %s %s, answered %v", id, got.IPv4, got.IPv6, want.Addresses)
		}
	}
	st.Close()

	// And the coordinator starts on it and shuts down cleanly on SIGTERM.
	h.start()
	h.waitHealthy(ctx)
	syscall.Kill(h.cur.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-h.cur.done:
		if h.cur.err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", h.cur.err, h.cur.stderr)
		}
	case <-ctx.Done():
		t.Fatal("no exit after SIGTERM")
	}
}
