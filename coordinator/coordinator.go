// Package coordinator assembles the Latch control plane from its parts:
// the store, the CA, the netmap hub (which compiles the access policy),
// the grant expirer and the HTTPS API, on one listener.
//
// New prepares everything that must exist before serving (data directory
// lock, database and migrations, CA, TLS certificate, bootstrap admin
// token); Run serves until its context ends and then shuts down
// gracefully. Configuration arrives as a typed Config; this package never
// reads flags or files of settings.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/atomicfile"
	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/console"
	"github.com/latchnet/latch/coordinator/expiry"
	"github.com/latchnet/latch/coordinator/grants"
	"github.com/latchnet/latch/coordinator/netmap"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// BootstrapUser is the user of the bootstrap admin token.
const BootstrapUser = "bootstrap"

// Files in the data directory besides the store's and the CA's.
const (
	BootstrapTokenFile = "bootstrap-token"
	lockFile           = "lock"
)

// Coordinator is a prepared control plane. Run serves it; Close releases
// it.
type Coordinator struct {
	cfg   Config
	log   *slog.Logger
	lock  *os.File
	store *store.SQLite
	ca    *ca.CA
	cert  *ca.ServerCert
	hub   *netmap.Hub
	exp   *grants.Expirer
	nexp  *expiry.Sweeper // node key expiry (identity, issue 4)
	api   *api.Server
	// handler serves the listener: the API with the web console mounted
	// (console.go; issue 6). console is nil when it is disabled.
	handler http.Handler
	console *console.Console
	// started is when New ran: a node's disconnection is counted from
	// no earlier than this, so a coordinator outage deletes no ephemeral
	// node before it had the chance to reconnect.
	started time.Time
}

// New prepares a coordinator: it locks the data directory against a second
// coordinator, opens and migrates the store, loads or creates the CA and
// the TLS certificate, and on first start writes the bootstrap token.
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *Coordinator, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dbPath, _ := cfg.DBPath()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	c := &Coordinator{cfg: cfg, log: log, started: time.Now()}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.lock, err = lockDir(cfg.DataDir); err != nil {
		return nil, err
	}
	// Released addresses wait for every live stream to drop their node
	// (store/addrhold.go); c.hub exists before anything is served.
	synced := func() uint64 { return c.hub.Version() }
	if c.store, err = store.OpenSQLite(ctx, dbPath, store.Options{SyncedVersion: synced}); err != nil {
		return nil, err
	}
	if _, err = c.store.Init(ctx, cfg.TrustDomain); err != nil {
		return nil, err
	}
	now := time.Now()
	created := false
	if c.ca, created, err = ca.LoadOrCreate(cfg.DataDir, cfg.TrustDomain, now); err != nil {
		return nil, err
	}
	if created {
		log.Info("created CA", "path", filepath.Join(cfg.DataDir, ca.CACertFile))
	}
	sans, err := ca.LocalSANs(cfg.ServerNames)
	if err != nil {
		return nil, err
	}
	if c.cert, created, err = ca.LoadServerCert(c.ca, ca.ServerCertConfig{Dir: cfg.DataDir, SANs: sans, Logger: log}); err != nil {
		return nil, err
	}
	if created {
		log.Info("issued TLS certificate", "dns", sans.DNS, "ips", len(sans.IPs), "not_after", c.cert.Leaf().NotAfter)
	}
	if err = c.bootstrap(ctx); err != nil {
		return nil, err
	}
	nmKey, created, err := netmap.LoadOrCreateKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created netmap signing key", "path", filepath.Join(cfg.DataDir, netmap.KeyFile))
	}
	c.hub = netmap.NewHub(netmap.HubConfig{
		Source:     &netmap.StoreSource{Store: c.store, Logger: log},
		SigningKey: nmKey,
		Logger:     log,
	})
	c.exp = grants.Start(grants.Config{Store: c.store, Notify: c.hub.Notify, Logger: log})
	c.nexp = expiry.Start(expiry.Config{Store: c.store, Notify: c.hub.Notify, Logger: log})
	fed, err := newFederation(cfg, log) // workload identity (federation.go)
	if err != nil {
		return nil, err
	}
	c.api = api.New(api.Config{
		Federation:       fed,
		Store:            c.store,
		CA:               c.ca,
		Hub:              c.hub,
		Grants:           c.exp,
		NodeCertLifetime: cfg.NodeCertLifetime,
		Keepalive:        cfg.Keepalive,
		RateLimits: api.RateLimits{
			EnrollPerIP:       cfg.EnrollPerIP.apiLimit(),
			EnrollPerKey:      cfg.EnrollPerKey.apiLimit(),
			AuthFailuresPerIP: cfg.AuthFailuresPerIP.apiLimit(),
		},
		Logger:        log,
		NodeKeyExpiry: cfg.NodeKeyExpiry,
		NodeExpiry:    c.nexp,
	})
	if c.handler, err = c.withConsole(sans); err != nil { // console.go (issue 6)
		return nil, err
	}
	return c, nil
}

// lockDir takes an exclusive lock on the data directory, released by
// Close or when the process dies.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is in use by another latch-coordinator", dir)
		}
		return nil, fmt.Errorf("locking data directory: %w", err)
	}
	return f, nil
}

// bootstrap creates the bootstrap admin token on first start. The file is
// written before the database records the token: a crash in between
// leaves bootstrap undone, and the next start writes a new file.
func (c *Coordinator) bootstrap(ctx context.Context) error {
	m, err := c.store.Meta(ctx)
	if err != nil {
		return err
	}
	if m.BootstrapDone {
		return nil
	}
	tok := api.NewToken()
	path := filepath.Join(c.cfg.DataDir, BootstrapTokenFile)
	if err := atomicfile.WriteFile(path, []byte(tok.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing bootstrap token: %w", err)
	}
	actx := audit.With(ctx, audit.Entry{Actor: audit.ActorSystem, Action: audit.TokenCreate, Target: "token:" + tok.ID,
		Summary: map[string]any{"user": BootstrapUser, "scopes": []string{api.ScopeAdmin}, "bootstrap": true}})
	if _, err := c.store.CreateBootstrapToken(actx, store.APIToken{
		ID:          tok.ID,
		User:        BootstrapUser,
		Scopes:      []string{api.ScopeAdmin},
		Description: "bootstrap",
		Created:     time.Now(),
	}, store.HashSecret(tok.Secret)); err != nil {
		return err
	}
	c.log.Info("created bootstrap admin token", "path", path, "token_id", tok.ID)
	return nil
}

// Handler returns the API handler (for tests).
func (c *Coordinator) Handler() http.Handler { return c.api }

// CA returns the network CA.
func (c *Coordinator) CA() *ca.CA { return c.ca }

// Run listens on cfg.Listen and serves until ctx ends.
func (c *Coordinator) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	return c.Serve(ctx, ln)
}

// Serve serves the API on ln until ctx ends, then shuts down gracefully:
// streams end, in-flight requests finish (bounded by ShutdownTimeout).
func (c *Coordinator) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           c.handler,
		TLSConfig:         api.TLSConfig(c.ca, c.cert.GetCertificate),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}
	if c.console != nil {
		srv.RegisterOnShutdown(c.console.Close) // ends live-update streams
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ServeTLS(deadPeerListener{ln}, "", "") }()
	c.log.Info("listening", "addr", ln.Addr().String(), "ca_fingerprint", wire.FormatFingerprint(c.ca.Fingerprint()))

	var wg sync.WaitGroup
	reapCtx, stopReap := context.WithCancel(ctx)
	wg.Add(1)
	r := &reaper{store: c.store, hub: c.hub, grace: c.cfg.EphemeralGrace, started: c.started, now: time.Now, log: c.log}
	go func() {
		defer wg.Done()
		r.run(reapCtx) // ephemeral.go
	}()
	wg.Add(1)
	fs := &flowSweeper{store: c.store, retention: c.cfg.FlowRetention, max: c.cfg.FlowMaxRecords, now: time.Now, log: c.log}
	go func() {
		defer wg.Done()
		fs.run(reapCtx) // flowsweep.go
	}()
	defer func() {
		stopReap()
		wg.Wait()
	}()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	c.log.Info("shutting down")
	c.hub.Close() // ends every stream, so Shutdown need not wait for them
	sctx, cancel := context.WithTimeout(context.Background(), c.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// Close releases the store and the data directory lock. Call it after Run
// returns.
func (c *Coordinator) Close() error {
	var errs []error
	if c.exp != nil {
		c.exp.Close()
	}
	if c.nexp != nil {
		c.nexp.Close()
	}
	if c.hub != nil {
		c.hub.Close()
	}
	if c.store != nil {
		errs = append(errs, c.store.Close())
	}
	if c.lock != nil {
		errs = append(errs, c.lock.Close())
	}
	return errors.Join(errs...)
}
