package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/wire"
)

// CoordinatorPort is the port the coordinator listens on in every cluster.
const CoordinatorPort = 8443

// StartTimeout bounds how long a coordinator or agent may take to come up.
const StartTimeout = 60 * time.Second

// cliTimeout bounds one latch CLI call.
const cliTimeout = 90 * time.Second

// Coordinator is a latch-coordinator process on a host, and what the CLI
// needs to talk to it.
type Coordinator struct {
	Host *netns.Host
	Bins Binaries
	// DataDir is --data-dir; it outlives restarts.
	DataDir string
	// URL is the coordinator's address for agents and the CLI.
	URL string
	// Args are the command line of every start.
	Args []string

	// owner is the TB the coordinator was created with: every process
	// start is stopped at its cleanup, even when a subtest restarted it.
	owner netns.TB

	mu   sync.Mutex // guards proc
	proc *netns.Proc
}

// StartCoordinator starts `latch-coordinator serve` on h with a fresh data
// directory and waits until /healthz answers over TLS verified against the
// coordinator's own CA. extra flags are appended to the command line.
func StartCoordinator(t netns.TB, bins Binaries, h *netns.Host, extra ...string) *Coordinator {
	t.Helper()
	if err := bins.Require(CoordinatorBin); err != nil {
		t.Fatalf("starting coordinator: %v", err)
	}
	c := &Coordinator{
		Host:    h,
		Bins:    bins,
		DataDir: filepath.Join(h.Dir, "coordinator"),
		URL:     fmt.Sprintf("https://%s", netip.AddrPortFrom(h.IP, CoordinatorPort)),
		owner:   t,
	}
	c.Args = append([]string{bins.Path(CoordinatorBin), "serve",
		"--listen", netip.AddrPortFrom(h.IP, CoordinatorPort).String(),
		"--data-dir", c.DataDir,
		"--log-level", "debug",
	}, extra...)
	c.Start(t)
	return c
}

// Start starts the coordinator process (again, after Kill or Stop) and
// waits until it serves. t only reports failure: the process lives until
// the cleanup of the TB that StartCoordinator was given.
func (c *Coordinator) Start(t netns.TB) {
	t.Helper()
	p, err := c.Host.Spawn(nil, c.Args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	netns.Manage(c.owner, p)
	c.mu.Lock()
	c.proc = p
	c.mu.Unlock()
	err = netns.Poll(StartTimeout, func() error {
		if p.Exited() {
			return fmt.Errorf("coordinator exited: %s", lastLine(p.Log()))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return c.Healthy(ctx)
	})
	if err != nil {
		t.Fatalf("coordinator on %s did not come up: %v", c.Host.Name, err)
	}
}

// Proc is the current coordinator process.
func (c *Coordinator) Proc() *netns.Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc
}

// Kill SIGKILLs the coordinator, by PID, and waits until it is gone.
func (c *Coordinator) Kill(t netns.TB) {
	t.Helper()
	if err := c.Proc().Kill(); err != nil {
		t.Fatalf("killing coordinator: %v", err)
	}
}

// Restart stops the coordinator gracefully and starts it again.
func (c *Coordinator) Restart(t netns.TB) {
	t.Helper()
	if err := c.Proc().Stop(); err != nil {
		t.Fatalf("stopping coordinator: %v", err)
	}
	c.Start(t)
}

// TokenFile is the bootstrap admin token the coordinator wrote on its
// first start.
func (c *Coordinator) TokenFile() string { return filepath.Join(c.DataDir, "bootstrap-token") }

// CAFile is the PEM certificate of the coordinator's CA.
func (c *Coordinator) CAFile() string { return filepath.Join(c.DataDir, "ca.crt") }

// Env is the environment the latch CLI needs for admin verbs.
func (c *Coordinator) Env() []string {
	return []string{
		"LATCH_COORDINATOR=" + c.URL,
		"LATCH_TOKEN_FILE=" + c.TokenFile(),
		"LATCH_CA_FILE=" + c.CAFile(),
	}
}

// Admin runs `latch args...` on the coordinator's host with Env set.
func (c *Coordinator) Admin(ctx context.Context, args ...string) (netns.Result, error) {
	return c.Host.RunEnv(ctx, c.Env(), append([]string{c.Bins.Path(CLIBin)}, args...)...)
}

// CreateKey runs `latch keys create --json args...` and returns the key.
func (c *Coordinator) CreateKey(t netns.TB, args ...string) wire.CreateKeyResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	res, err := c.Admin(ctx, append([]string{"keys", "create", "--json"}, args...)...)
	if err != nil {
		t.Fatalf("creating key: %v", err)
	}
	var key wire.CreateKeyResponse
	if err := json.Unmarshal([]byte(res.Stdout), &key); err != nil || key.Key == "" {
		t.Fatalf("latch keys create --json: cannot read key (%v) from %d bytes of output", err, len(res.Stdout))
	}
	return key
}

// Nodes runs `latch nodes list --json`.
func (c *Coordinator) Nodes(ctx context.Context) ([]wire.NodeInfo, error) {
	res, err := c.Admin(ctx, "nodes", "list", "--json")
	if err != nil {
		return nil, err
	}
	return decodeList[wire.NodeInfo](res.Stdout, "nodes")
}

// Keys runs `latch keys list --json`.
func (c *Coordinator) Keys(ctx context.Context) ([]wire.KeyInfo, error) {
	res, err := c.Admin(ctx, "keys", "list", "--json")
	if err != nil {
		return nil, err
	}
	return decodeList[wire.KeyInfo](res.Stdout, "keys")
}

// decodeList reads a JSON array, or an object holding the array under
// field.
func decodeList[T any](s, field string) ([]T, error) {
	var list []T
	if err := json.Unmarshal([]byte(s), &list); err == nil {
		return list, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &obj); err != nil {
		return nil, fmt.Errorf("decoding %s list: %w", field, err)
	}
	raw, ok := obj[field]
	if !ok {
		return nil, fmt.Errorf("decoding %s list: neither an array nor an object with %q", field, field)
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("decoding %s list: %w", field, err)
	}
	return list, nil
}

// HTTPClient returns a client that connects from inside host from and
// trusts only the coordinator's CA, TLS 1.3.
func (c *Coordinator) HTTPClient(from *netns.Host) (*http.Client, error) {
	pem, err := os.ReadFile(c.CAFile())
	if err != nil {
		return nil, fmt.Errorf("reading coordinator CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("reading coordinator CA: no PEM certificate")
	}
	tr := &http.Transport{
		DialContext:     from.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// Healthy checks GET /healthz from the coordinator's own host.
func (c *Coordinator) Healthy(ctx context.Context) error {
	hc, err := c.HTTPClient(c.Host)
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health check: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// lastLine returns the last non-empty line of s, for short messages.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
