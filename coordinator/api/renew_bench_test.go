package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/netmap"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// BenchmarkRenewUnderLoad measures certificate renewal against a real
// SQLite store and a signing hub while streams subscribers receive
// deltas: streams nodes hold netmap streams (each sees every other under
// a mesh policy) and one node's endpoints change every churn interval,
// so every stream gets a delta; renewers nodes renew concurrently over
// mTLS. It reports renewals/s and the p50 and p99 latency of one renewal.
//
//	go test -run '^$' -bench BenchmarkRenewUnderLoad -benchtime 2000x ./coordinator/api
func BenchmarkRenewUnderLoad(b *testing.B) {
	for _, c := range []struct{ streams, renewers int }{{100, 1}, {100, 16}, {500, 32}} {
		b.Run(fmt.Sprintf("streams=%d/renewers=%d", c.streams, c.renewers), func(b *testing.B) {
			benchRenew(b, c.streams, c.renewers, 20*time.Millisecond)
		})
	}
}

// benchNet is a coordinator API over loopback HTTPS on a real SQLite
// store with a signing hub, a mesh policy and n enrolled nodes, for
// benchmarks.
type benchNet struct {
	b     *testing.B
	st    *store.SQLite
	hub   *netmap.Hub
	srv   *httptest.Server
	token string // admin
	nodes []*agent
}

func newBenchNet(b *testing.B, n int) *benchNet {
	ctx := context.Background()
	dir := b.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "latch.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if _, err := st.Init(ctx, testTD); err != nil {
		b.Fatal(err)
	}
	c, _, err := ca.LoadOrCreate(dir, testTD, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	sc, _, err := ca.LoadServerCert(c, ca.ServerCertConfig{Dir: dir, SANs: ca.SANs{IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}})
	if err != nil {
		b.Fatal(err)
	}
	nmKey, _, err := netmap.LoadOrCreateKey(dir)
	if err != nil {
		b.Fatal(err)
	}
	hub := netmap.NewHub(netmap.HubConfig{Source: &netmap.StoreSource{Store: st}, SigningKey: nmKey, QueueLen: 256})
	srv := httptest.NewUnstartedServer(New(Config{Store: st, CA: c, Hub: hub, NodeCertLifetime: time.Hour, Keepalive: time.Hour,
		RateLimits: noRateLimits}))
	srv.TLS = TLSConfig(c, sc.GetCertificate)
	cur, _ := sc.GetCertificate(nil)
	srv.TLS.Certificates = []tls.Certificate{*cur}
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	b.Cleanup(srv.Close)
	b.Cleanup(hub.Close) // runs first: ends the streams

	// Setup with the store directly (fast): a token, a policy, the nodes.
	now := time.Now()
	tok := NewToken()
	if _, err := st.CreateBootstrapToken(ctx, store.APIToken{ID: tok.ID, User: "bench", Scopes: []string{ScopeAdmin}, Created: now},
		store.HashSecret(tok.Secret)); err != nil {
		b.Fatal(err)
	}
	if _, err := st.SavePolicy(ctx, meshPolicy, "bench", 0, now); err != nil {
		b.Fatal(err)
	}
	keyID, secret := "bbbbbbbbbbbb", "bench-secret"
	if err := st.CreateEnrollmentKey(ctx, store.EnrollmentKey{ID: keyID, Reusable: true, Tags: []wire.Tag{"tag:mesh"},
		Created: now, Expires: now.Add(time.Hour)}, store.HashSecret(secret)); err != nil {
		b.Fatal(err)
	}
	net := &benchNet{b: b, st: st, hub: hub, srv: srv, token: tok.String(), nodes: make([]*agent, n)}
	for i := range net.nodes {
		a := newAgent()
		id := store.NewNodeID()
		der, pub, err := c.IssueNode(a.csr(), id, time.Hour, now)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Enroll(ctx, store.Enrollment{NodeID: id, KeyID: keyID, SecretHash: store.HashSecret(secret),
			Hostname: fmt.Sprintf("n%d", i), WireGuardKey: a.wgKey, CertKey: pub, Now: now,
			Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.1:51820")}}); err != nil {
			b.Fatal(err)
		}
		a.resp.Node.ID = id
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.Pool(), MinVersion: tls.VersionTLS13,
			Certificates: []tls.Certificate{*a.tlsCert(der)}}, ForceAttemptHTTP2: true}
		b.Cleanup(tr.CloseIdleConnections)
		a.client = &http.Client{Transport: tr}
		net.nodes[i] = a
	}
	hub.Notify()
	return net
}

// stream opens nodes' netmap streams and calls fn with every message of
// each (from that stream's goroutine) until ctx ends. It returns once
// every stream delivered its first netmap; wait waits for the readers.
func (n *benchNet) stream(ctx context.Context, nodes []*agent, fn func(i int, m *wire.StreamMessage)) (wait func()) {
	var wg sync.WaitGroup
	ready := make(chan struct{}, len(nodes))
	for i, a := range nodes {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.srv.URL+wire.PathStream, nil)
		req.Header.Set(wire.HeaderProtocol, fmt.Sprint(wire.ProtocolVersion))
		resp, err := a.client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			n.b.Fatalf("stream: %v %v", err, resp)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer resp.Body.Close()
			dec := json.NewDecoder(resp.Body)
			for first := true; ; first = false {
				var m wire.StreamMessage
				if err := dec.Decode(&m); err != nil {
					return
				}
				if first {
					ready <- struct{}{}
				}
				fn(i, &m)
			}
		}()
	}
	for range nodes {
		<-ready
	}
	return wg.Wait
}

// post calls the admin API and fails unless it answers 2xx.
func (n *benchNet) post(path string, in any) {
	req, _ := http.NewRequest(http.MethodPost, n.srv.URL+path, bytes.NewReader(mustJSON(in)))
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := n.nodes[0].client.Do(req)
	if err != nil {
		n.b.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		n.b.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
}

// percentile returns the p-quantile of sorted ds in milliseconds.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))].Microseconds()) / 1000
}

func benchRenew(b *testing.B, streams, renewers int, churn time.Duration) {
	net := newBenchNet(b, streams+renewers)
	nodes := net.nodes
	srv := net.srv
	var deltas atomic.Int64
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	waitStreams := net.stream(sctx, nodes[:streams], func(_ int, m *wire.StreamMessage) {
		if m.Delta != nil {
			deltas.Add(1)
		}
	})
	// Churn: one stream node's endpoints change every interval.
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(churn)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
			ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 51820)
			body, _ := json.Marshal(wire.UpdateRequest{Endpoints: []netip.AddrPort{ep}})
			req, _ := http.NewRequestWithContext(sctx, http.MethodPost, srv.URL+wire.PathUpdate, bytes.NewReader(body))
			req.Header.Set(wire.HeaderProtocol, fmt.Sprint(wire.ProtocolVersion))
			if resp, err := nodes[0].client.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()

	// The renewals: b.N in all, spread over the renewers.
	var (
		next      atomic.Int64
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
		failed    atomic.Int64
	)
	deltas.Store(0)
	b.ResetTimer()
	start := time.Now()
	var rwg sync.WaitGroup
	for _, a := range nodes[streams:] {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			body, _ := json.Marshal(wire.RenewRequest{CSR: a.csr()}) // the same key: the client's certificate stays current
			var mine []time.Duration
			for next.Add(1) <= int64(b.N) {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+wire.PathRenew, bytes.NewReader(body))
				req.Header.Set(wire.HeaderProtocol, fmt.Sprint(wire.ProtocolVersion))
				t0 := time.Now()
				resp, err := a.client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(t0))
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}()
	}
	rwg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	wg.Wait()
	net.hub.Close()
	waitStreams()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d renewals failed", f)
	}
	slices.Sort(latencies)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "renewals/s")
	b.ReportMetric(percentile(latencies, 0.50), "p50-ms")
	b.ReportMetric(percentile(latencies, 0.99), "p99-ms")
	b.ReportMetric(float64(deltas.Load())/elapsed.Seconds(), "deltas/s")
}
