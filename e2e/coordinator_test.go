package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/wire"
)

// These tests speak the coordinator's HTTP API directly, as a misbehaving
// or racing client would, against the real binary.

// apiClient posts to one coordinator from inside a host.
type apiClient struct {
	hc    *http.Client
	url   string
	token string // admin token, for admin paths
}

func newAPIClient(t *testing.T, coord *cluster.Coordinator) *apiClient {
	t.Helper()
	hc, err := coord.HTTPClient(coord.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	return &apiClient{hc: hc, url: coord.URL}
}

// post sends body to path and returns the status and the response body.
func (c *apiClient) post(ctx context.Context, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(wire.HeaderProtocol, fmt.Sprint(wire.ProtocolVersion))
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// enrollBody is a valid enrollment request for key, with fresh node keys.
func enrollBody(t *testing.T, key, hostname string) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: hostname}}, priv)
	if err != nil {
		t.Fatal(err)
	}
	var wg wire.NodePublic
	if _, err := rand.Read(wg[:]); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(wire.EnrollRequest{AuthKey: key, Hostname: hostname, WireGuardKey: wg, CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func nodeCount(t *testing.T, coord *cluster.Coordinator) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodes, err := coord.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return len(nodes)
}

func TestConcurrentEnrollmentsWithOneOffKeyCreateOneNode(t *testing.T) {
	bins := setup(t)
	n := netns.NewNetwork(t)
	coord := cluster.StartCoordinator(t, bins, n.AddHost("coord"))
	key := coord.CreateKey(t, "--description", "one-off, raced")
	api := newAPIClient(t, coord)
	const racers = 20
	bodies := make([][]byte, racers)
	for i := range bodies {
		bodies[i] = enrollBody(t, key.Key, fmt.Sprintf("racer%d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	statuses := make([]int, racers)
	errs := make([]error, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses[i], _, errs[i] = api.post(ctx, wire.PathEnroll, bodies[i])
		}()
	}
	close(start)
	wg.Wait()
	var ok int
	for i, st := range statuses {
		switch {
		case errs[i] != nil:
			t.Errorf("enrollment %d: %v", i, errs[i])
		case st == http.StatusOK:
			ok++
		case st < 400 || st >= 500:
			t.Errorf("enrollment %d: status %d, want 200 or a 4xx refusal", i, st)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent enrollments with one one-off key succeeded, want exactly 1", ok, racers)
	}
	if got := nodeCount(t, coord); got != 1 {
		t.Errorf("%d nodes after the race, want 1", got)
	}
}

func TestMalformedAndOversizedRequestsGet4xxAndStoreNothing(t *testing.T) {
	bins := setup(t)
	n := netns.NewNetwork(t)
	coord := cluster.StartCoordinator(t, bins, n.AddHost("coord"))
	key := coord.CreateKey(t, "--description", "one-off, must survive bad requests")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	keysBefore, err := coord.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	token, err := readToken(coord)
	if err != nil {
		t.Fatal(err)
	}
	anon := newAPIClient(t, coord)
	admin := newAPIClient(t, coord)
	admin.token = token

	valid := enrollBody(t, key.Key, "valid")
	var withUnknown map[string]any
	if err := json.Unmarshal(valid, &withUnknown); err != nil {
		t.Fatal(err)
	}
	withUnknown["unexpected_field"] = true
	unknownField, _ := json.Marshal(withUnknown)
	huge := []byte(`{"auth_key":"` + key.Key + `","hostname":"` + strings.Repeat("h", wire.MaxRequestBytes) + `"}`)

	tests := []struct {
		name   string
		client *apiClient
		path   string
		body   []byte
		want   int
	}{
		{"enroll-malformed-json", anon, wire.PathEnroll, []byte(`{"auth_key": `), http.StatusBadRequest},
		{"enroll-unknown-field", anon, wire.PathEnroll, unknownField, http.StatusBadRequest},
		{"enroll-oversized", anon, wire.PathEnroll, huge, http.StatusRequestEntityTooLarge},
		{"enroll-not-json", anon, wire.PathEnroll, []byte("hello"), http.StatusBadRequest},
		{"keys-malformed-json", admin, wire.PathKeys, []byte(`{"reusable": tru`), http.StatusBadRequest},
		{"keys-unknown-field", admin, wire.PathKeys, []byte(`{"reusable": true, "admin": true}`), http.StatusBadRequest},
		{"keys-oversized", admin, wire.PathKeys, []byte(`{"description":"` + strings.Repeat("d", wire.MaxRequestBytes) + `"}`), http.StatusRequestEntityTooLarge},
		{"keys-without-token", anon, wire.PathKeys, []byte(`{"reusable": true}`), http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, body, err := tt.client.post(ctx, tt.path, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if st != tt.want {
				t.Errorf("status %d, want %d (body %.200q)", st, tt.want, body)
			}
			var e wire.Error
			if err := json.Unmarshal(body, &e); err != nil || !oneLine(e.Message) {
				t.Errorf("error body %.200q: want {\"error\": \"one line\"}", body)
			}
			if strings.Contains(string(body), secretOf(key.Key)) {
				t.Error("the error echoes the enrollment key's secret")
			}
		})
	}
	if got := nodeCount(t, coord); got != 0 {
		t.Errorf("%d nodes after bad requests, want 0", got)
	}
	keysAfter, err := coord.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keysAfter) != len(keysBefore) {
		t.Errorf("%d keys after bad requests, want %d", len(keysAfter), len(keysBefore))
	}
	// The one-off key was not consumed by any of the bad requests.
	if st, body, err := anon.post(ctx, wire.PathEnroll, valid); err != nil || st != http.StatusOK {
		t.Errorf("valid enrollment after the bad ones: status %d, %v (%.200q)", st, err, body)
	}
}

func TestCoordinatorKilledDuringEnrollmentBurstKeepsStoreConsistent(t *testing.T) {
	bins := setup(t)
	n := netns.NewNetwork(t)
	coord := cluster.StartCoordinator(t, bins, n.AddHost("coord"))
	key := coord.CreateKey(t, "--reusable", "--description", "burst")
	type acked struct {
		id    wire.NodeID
		addrs []netip.Prefix
	}
	var all []acked
	const rounds, workers = 10, 8
	for round := range rounds {
		api := newAPIClient(t, coord)
		// Kill after a random number of acknowledged enrollments, while
		// the workers keep others in flight.
		killAfter := 1 + randInt(t, 15)
		var (
			mu      sync.Mutex // guards got
			got     []acked
			enough  = make(chan struct{})
			killed  = make(chan struct{})
			once    sync.Once
			wg      sync.WaitGroup
			ctx, cl = context.WithTimeout(context.Background(), time.Minute)
		)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-killed:
						return
					default:
					}
					st, body, err := api.post(ctx, wire.PathEnroll, enrollBody(t, key.Key, fmt.Sprintf("r%dw%di%d", round, w, i)))
					if err != nil || st != http.StatusOK {
						continue // refused or cut off by the kill
					}
					var resp wire.EnrollResponse
					if err := json.Unmarshal(body, &resp); err != nil {
						t.Errorf("decoding enrollment response: %v", err)
						continue
					}
					mu.Lock()
					got = append(got, acked{resp.Node.ID, resp.Node.Addresses})
					if len(got) >= killAfter {
						once.Do(func() { close(enough) })
					}
					mu.Unlock()
				}
			}()
		}
		select {
		case <-enough:
			coord.Kill(t)
			close(killed)
		case <-ctx.Done():
			close(killed)
			wg.Wait()
			t.Fatalf("round %d: only %d enrollments acknowledged before the deadline", round, len(got))
		}
		wg.Wait()
		cl()
		api.hc.CloseIdleConnections()
		all = append(all, got...)
		t.Logf("round %d: killed the coordinator after %d acknowledged enrollments", round, len(got))
		coord.Start(t) // the store must open
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodes, err := coord.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[wire.NodeID]wire.NodeInfo{}
	owner := map[netip.Addr]wire.NodeID{}
	for _, nd := range nodes {
		if _, dup := byID[nd.ID]; dup {
			t.Errorf("node ID %s listed twice", nd.ID)
		}
		byID[nd.ID] = nd
		for _, p := range nd.Addresses {
			if other, dup := owner[p.Addr()]; dup {
				t.Errorf("address %v belongs to both %s and %s", p.Addr(), other, nd.ID)
			}
			owner[p.Addr()] = nd.ID
		}
	}
	for _, a := range all {
		nd, ok := byID[a.id]
		if !ok {
			t.Errorf("acknowledged node %s is missing after the crash", a.id)
			continue
		}
		if fmt.Sprint(nd.Addresses) != fmt.Sprint(a.addrs) {
			t.Errorf("node %s: acknowledged addresses %v, store has %v", a.id, a.addrs, nd.Addresses)
		}
	}
	t.Logf("%d acknowledged enrollments, %d nodes in the store", len(all), len(nodes))
}

func readToken(coord *cluster.Coordinator) (string, error) {
	b, err := os.ReadFile(coord.TokenFile())
	if err != nil {
		return "", fmt.Errorf("reading bootstrap token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func randInt(t *testing.T, n int64) int {
	t.Helper()
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		t.Fatal(err)
	}
	return int(v.Int64())
}
