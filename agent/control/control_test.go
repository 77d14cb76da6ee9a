package control_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/agent/control"
	"github.com/latchnet/latch/agent/internal/fakecoord"
	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

type nodeKeys struct {
	wg   wgtypes.Key
	cert ed25519.PrivateKey
	csr  []byte
}

func newNodeKeys(t *testing.T) nodeKeys {
	t.Helper()
	wg, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	_, ck, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, ck)
	if err != nil {
		t.Fatal(err)
	}
	return nodeKeys{wg: wg, cert: ck, csr: csr}
}

func enrollReq(k nodeKeys, authKey string) wire.EnrollRequest {
	return wire.EnrollRequest{AuthKey: authKey, Hostname: "host-a", WireGuardKey: wire.NodePublic(k.wg.PublicKey()), CSR: k.csr}
}

func TestEnrollPinsCAFromEnrollmentKey(t *testing.T) {
	tests := []struct {
		name    string
		present fakecoord.Present
		wantErr bool
	}{
		{"pinned CA issued the server cert", fakecoord.PresentGood, false},
		{"valid server of another CA", fakecoord.PresentOtherCA, true},
		{"pinned CA shown but another CA issued the leaf", fakecoord.PresentOtherLeafWithPinnedCA, true},
		{"CA not presented", fakecoord.PresentLeafOnly, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakecoord.New(t, fakecoord.Options{Present: tt.present})
			k := newNodeKeys(t)
			en, err := control.Enroll(context.Background(), s.URL, enrollReq(k, s.AuthKey))
			enrolls, _, _ := s.Counts()
			if tt.wantErr {
				if !errors.Is(err, control.ErrPinMismatch) {
					t.Fatalf("Enroll error = %v, want ErrPinMismatch", err)
				}
				if enrolls != 0 {
					t.Errorf("coordinator saw %d enrollments; the key must not be sent to an unpinned server", enrolls)
				}
				if strings.Contains(err.Error(), strings.Split(s.AuthKey, "_")[2]) {
					t.Errorf("error leaks the key secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Enroll: %v", err)
			}
			if !en.CA.Equal(s.CA.Cert) {
				t.Errorf("enrollment CA is not the network CA")
			}
			if en.TrustDomain != fakecoord.TrustDomain || en.Node.ID == "" {
				t.Errorf("enrollment = %+v", en)
			}
		})
	}
}

func TestEnrollSurfacesCoordinatorReasonOnOneLine(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{})
	s.FailEnrollments("enrollment key expired")
	_, err := control.Enroll(context.Background(), s.URL, enrollReq(newNodeKeys(t), s.AuthKey))
	if err == nil || err.Error() != "enrollment refused: enrollment key expired" {
		t.Fatalf("Enroll error = %q, want %q", err, "enrollment refused: enrollment key expired")
	}
}

func TestEnrollRejectsMalformedKeyWithoutEchoingIt(t *testing.T) {
	_, err := control.Enroll(context.Background(), "https://127.0.0.1:1", wire.EnrollRequest{AuthKey: "latchkey_zz_secretsecret_x"})
	if err == nil || strings.Contains(err.Error(), "secretsecret") {
		t.Fatalf("Enroll error = %v", err)
	}
}

func TestBaseURL(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"https://c.example:8443", "https://c.example:8443", false},
		{"https://c.example:8443/", "https://c.example:8443", false},
		{"198.18.0.1:8443", "https://198.18.0.1:8443", false},
		{"http://c.example", "", true},
		{"", "", true},
		{"https://u:p@c.example", "", true},
	}
	for _, tt := range tests {
		got, err := control.BaseURL(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("BaseURL(%q) = %q, %v; want %q, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// streamClient enrolls a node and returns a client holding its certificate.
func streamClient(t *testing.T, s *fakecoord.Server, keepAlive time.Duration) (*control.Client, *control.Enrollment) {
	t.Helper()
	k := newNodeKeys(t)
	en, err := control.Enroll(context.Background(), s.URL, enrollReq(k, s.AuthKey))
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	tc := &tls.Certificate{Certificate: [][]byte{en.Cert.Raw}, PrivateKey: k.cert, Leaf: en.Cert}
	c, err := control.NewClient(control.ClientConfig{
		BaseURL:     s.URL,
		CA:          en.CA,
		Certificate: func() (*tls.Certificate, error) { return tc, nil },
		NodeID:      en.Node.ID,
		NetmapKey:   en.NetmapKey,
		KeepAlive:   keepAlive,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, en
}

func nextStream(t *testing.T, s *fakecoord.Server) *fakecoord.Stream {
	t.Helper()
	select {
	case st := <-s.Streams:
		return st
	case <-time.After(10 * time.Second):
		t.Fatal("no stream opened within 10s")
		return nil
	}
}

type streamResult struct {
	versions []uint64
	full     []bool
	err      error
}

func runStream(ctx context.Context, c *control.Client) (chan streamResult, chan uint64) {
	done := make(chan streamResult, 1)
	seen := make(chan uint64, 100)
	go func() {
		var r streamResult
		r.err = c.Stream(ctx, func(nm *wire.Netmap, _ []byte, full bool) {
			r.versions = append(r.versions, nm.Version)
			r.full = append(r.full, full)
			seen <- nm.Version
		})
		done <- r
	}()
	return done, seen
}

func waitResult(t *testing.T, done chan streamResult) streamResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Stream did not return within 10s")
		return streamResult{}
	}
}

func TestStreamAppliesDeltasAndStopsAtVersionGap(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{})
	c, en := streamClient(t, s, 0)
	done, _ := runStream(context.Background(), c)
	st := nextStream(t, s)
	nm := s.Netmap(en.Node.ID)
	nm.Version = 10
	st.Send(wire.StreamMessage{Type: wire.MsgNetmap, Netmap: nm})
	st.Send(wire.StreamMessage{Type: wire.MsgKeepAlive, KeepAlive: time.Second})
	st.Send(wire.StreamMessage{Type: wire.MsgDelta, Delta: &wire.Delta{PrevVersion: 10, Version: 11}})
	st.Send(wire.StreamMessage{Type: "future-message-type"})
	st.Send(wire.StreamMessage{Type: wire.MsgDelta, Delta: &wire.Delta{PrevVersion: 13, Version: 14}})
	r := waitResult(t, done)
	if !errors.Is(r.err, control.ErrVersionGap) {
		t.Fatalf("Stream error = %v, want ErrVersionGap", r.err)
	}
	if want := []uint64{10, 11}; !equal(r.versions, want) {
		t.Errorf("versions = %v, want %v", r.versions, want)
	}
	if want := []bool{true, false}; !equal(r.full, want) {
		t.Errorf("full = %v, want %v", r.full, want)
	}
}

func TestStreamDeclaresSilenceAfterThreeKeepalives(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	c, _ := streamClient(t, s, time.Hour)
	done, seen := runStream(context.Background(), c)
	st := nextStream(t, s)
	<-seen
	// The coordinator names a short interval, then says nothing.
	st.Send(wire.StreamMessage{Type: wire.MsgKeepAlive, KeepAlive: 20 * time.Millisecond})
	r := waitResult(t, done)
	if !errors.Is(r.err, control.ErrSilent) {
		t.Fatalf("Stream error = %v, want ErrSilent", r.err)
	}
}

func TestStreamRefusedForDeletedNode(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{})
	c, en := streamClient(t, s, 0)
	s.DeleteNode(en.Node.ID)
	err := c.Stream(context.Background(), func(*wire.Netmap, []byte, bool) { t.Error("netmap for a deleted node") })
	if !errors.Is(err, control.ErrRefused) || !strings.Contains(err.Error(), "node not found") {
		t.Fatalf("Stream error = %v, want ErrRefused with the coordinator's reason", err)
	}
}

func TestStreamEndsWithContext(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	c, _ := streamClient(t, s, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done, seen := runStream(ctx, c)
	<-seen
	cancel()
	if r := waitResult(t, done); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Stream error = %v, want context.Canceled", r.err)
	}
}

func TestRenewIssuesCertificateForSameKey(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{})
	c, en := streamClient(t, s, 0)
	_, ck, _ := ed25519.GenerateKey(rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, ck)
	cert, err := c.Renew(context.Background(), csr)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if err := control.CheckNodeCert(cert, en.CA, ck.Public().(ed25519.PublicKey), en.TrustDomain, en.Node.ID); err != nil {
		t.Fatalf("renewed certificate: %v", err)
	}
}

func TestBackoffGrowsToMaxWithFullJitter(t *testing.T) {
	top := func(n int64) int64 { return n - 1 } // the largest value
	var asked []int64
	record := func(n int64) int64 { asked = append(asked, n); return n / 2 }
	b := control.Backoff{Min: time.Second, Max: time.Minute, Rand: top}
	var got []time.Duration
	for i := range 9 {
		got = append(got, b.Delay(i))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Errorf("Delay(%d) with the top random value = %v, want %v", i, got[i], want[i]*time.Second)
		}
	}
	b.Rand = record
	if d := b.Delay(3); d != 4*time.Second {
		t.Errorf("Delay(3) with a mid random value = %v, want 4s", d)
	}
	if len(asked) != 1 || asked[0] != int64(8*time.Second)+1 {
		t.Errorf("random range asked = %v, want [0, 8s]", asked)
	}
	b.Rand = func(int64) int64 { return 0 }
	if d := b.Delay(5); d != 0 {
		t.Errorf("Delay(5) with the lowest random value = %v, want 0 (full jitter)", d)
	}
	// The default source spreads: 50 draws are not all equal.
	b.Rand = nil
	distinct := map[time.Duration]bool{}
	for range 50 {
		distinct[b.Delay(6)] = true
	}
	if len(distinct) < 2 {
		t.Errorf("default jitter produced one value in 50 draws")
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRequestAccessKeepsTheCoordinatorsStatusAndReason(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{})
	c, en := streamClient(t, s, 0)
	ar, err := c.RequestAccess(context.Background(), wire.NodeAccessRequest{To: "svc:db", Duration: time.Minute, Reason: "INC-1"})
	if err != nil || ar.State != wire.AccessPending || ar.Src != en.Node.ID {
		t.Fatalf("RequestAccess = %+v, %v", ar, err)
	}
	s.OnAccess(func(wire.Node, wire.NodeAccessRequest) (wire.AccessRequest, int, string) {
		return wire.AccessRequest{}, http.StatusForbidden, "not allowed by policy"
	})
	_, err = c.RequestAccess(context.Background(), wire.NodeAccessRequest{To: "svc:db", Duration: time.Minute, Reason: "INC-1"})
	var ae *control.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || err.Error() != "requesting access: not allowed by policy" {
		t.Fatalf("refused RequestAccess error = %v (%T)", err, err)
	}
}
