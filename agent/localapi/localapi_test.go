package localapi_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/wire"
)

type fakeBackend struct {
	upReq     localapi.UpRequest
	upErr     error
	status    localapi.Status
	accessReq wire.NodeAccessRequest
}

func (b *fakeBackend) Up(ctx context.Context, req localapi.UpRequest) (localapi.UpResponse, error) {
	b.upReq = req
	if b.upErr != nil {
		return localapi.UpResponse{}, b.upErr
	}
	return localapi.UpResponse{NodeID: "n1", Name: "web-1", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32")}, Enrolled: true}, nil
}

func (b *fakeBackend) Down(ctx context.Context) error { return nil }

func (b *fakeBackend) Status(ctx context.Context) (localapi.Status, error) { return b.status, nil }

func (b *fakeBackend) Ping(ctx context.Context, req localapi.PingRequest, emit func(localapi.PingEvent)) error {
	if req.Peer == "nobody" {
		return localapi.Errorf(http.StatusNotFound, "no peer named or addressed %q", req.Peer)
	}
	emit(localapi.PingEvent{Target: &localapi.PingTarget{Name: req.Peer, Address: netip.MustParseAddr("100.64.0.2")}})
	emit(localapi.PingEvent{Reply: &localapi.PingReply{Seq: 1, RTT: time.Millisecond}})
	return errors.New("socket closed\nsecond line")
}

func (b *fakeBackend) RequestAccess(ctx context.Context, req wire.NodeAccessRequest) (wire.AccessRequest, error) {
	b.accessReq = req
	if req.To == "svc:nope" {
		return wire.AccessRequest{}, localapi.Errorf(http.StatusForbidden, "no access rule lets this node request svc:nope")
	}
	return wire.AccessRequest{ID: "ar1", To: req.To, Port: req.Port, Duration: req.Duration, Reason: req.Reason, State: wire.AccessPending}, nil
}

func (b *fakeBackend) AccessRequest(ctx context.Context, id string) (wire.AccessRequest, error) {
	if id != "ar1" {
		return wire.AccessRequest{}, localapi.Errorf(http.StatusNotFound, "access request %q not found", id)
	}
	return wire.AccessRequest{ID: "ar1", To: "svc:db", State: wire.AccessApproved}, nil
}

// serve starts the API over b on a socket in a temp dir.
func serve(t *testing.T, b localapi.Backend) (*localapi.Client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "run", "latchd.sock")
	ln, err := localapi.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: localapi.NewHandler(b, nil)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return localapi.NewClient(sock), sock
}

func TestClientServerRoundTrip(t *testing.T) {
	b := &fakeBackend{status: localapi.Status{State: localapi.StateConnected, Peers: []localapi.Peer{{Node: localapi.Node{Name: "db-1"}, RxBytes: 7}}}}
	c, sock := serve(t, b)
	ctx := context.Background()

	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket mode = %v, %v; want a 0600 socket", fi.Mode(), err)
	}

	resp, err := c.Up(ctx, localapi.UpRequest{Coordinator: "https://c", AuthKey: "k", Tags: []wire.Tag{"tag:a"}, Timeout: time.Second})
	if err != nil || resp.Name != "web-1" || !resp.Enrolled {
		t.Fatalf("Up = %+v, %v", resp, err)
	}
	if b.upReq.Coordinator != "https://c" || b.upReq.AuthKey != "k" || b.upReq.Timeout != time.Second || len(b.upReq.Tags) != 1 {
		t.Errorf("backend got %+v", b.upReq)
	}

	st, err := c.Status(ctx)
	if err != nil || st.State != localapi.StateConnected || len(st.Peers) != 1 || st.Peers[0].RxBytes != 7 {
		t.Errorf("Status = %+v, %v", st, err)
	}
	if err := c.Down(ctx); err != nil {
		t.Errorf("Down: %v", err)
	}

	ar, err := c.RequestAccess(ctx, wire.NodeAccessRequest{To: "svc:db", Port: 5432, Duration: 30 * time.Minute, Reason: "INC-42"})
	if err != nil || ar.ID != "ar1" || ar.State != wire.AccessPending || ar.Duration != 30*time.Minute {
		t.Errorf("RequestAccess = %+v, %v", ar, err)
	}
	if want := (wire.NodeAccessRequest{To: "svc:db", Port: 5432, Duration: 30 * time.Minute, Reason: "INC-42"}); b.accessReq != want {
		t.Errorf("backend got %+v, want %+v", b.accessReq, want)
	}
	if ar, err := c.AccessRequest(ctx, "ar1"); err != nil || ar.State != wire.AccessApproved {
		t.Errorf("AccessRequest(ar1) = %+v, %v", ar, err)
	}
	if _, err := c.AccessRequest(ctx, "ar2"); err == nil || err.Error() != `access request "ar2" not found` {
		t.Errorf("AccessRequest(ar2) error = %v", err)
	}
	if _, err := c.RequestAccess(ctx, wire.NodeAccessRequest{To: "svc:nope"}); err == nil || err.Error() != "no access rule lets this node request svc:nope" {
		t.Errorf("refused RequestAccess error = %v", err)
	}

	b.upErr = errors.New("enrollment refused: enrollment key expired")
	if _, err := c.Up(ctx, localapi.UpRequest{}); err == nil || err.Error() != "enrollment refused: enrollment key expired" {
		t.Errorf("Up error = %v", err)
	}

	var events []localapi.PingEvent
	err = c.Ping(ctx, localapi.PingRequest{Peer: "db-1"}, func(ev localapi.PingEvent) { events = append(events, ev) })
	if len(events) != 2 || events[0].Target == nil || events[1].Reply == nil || events[1].Reply.RTT != time.Millisecond {
		t.Errorf("ping events = %+v", events)
	}
	if err == nil || err.Error() != "socket closed" {
		t.Errorf("Ping error = %v, want the backend's first line", err)
	}
	err = c.Ping(ctx, localapi.PingRequest{Peer: "nobody"}, func(localapi.PingEvent) { t.Error("event for unknown peer") })
	if err == nil || !strings.Contains(err.Error(), "no peer named") {
		t.Errorf("Ping error = %v", err)
	}
}

func TestServerRejectsUnknownFieldsAndRoutes(t *testing.T) {
	_, sock := serve(t, &fakeBackend{})
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	tests := []struct {
		method, path, body string
		want               int
	}{
		{"POST", localapi.PathUp, `{"bogus":1}`, http.StatusBadRequest},
		{"POST", localapi.PathUp, `{`, http.StatusBadRequest},
		{"GET", localapi.PathUp, ``, http.StatusMethodNotAllowed},
		{"GET", "/v1/nope", ``, http.StatusNotFound},
		{"GET", localapi.PathStatus, ``, http.StatusOK},
		{"POST", localapi.PathAccess, `{"to":"svc:db","bogus":1}`, http.StatusBadRequest},
		{"GET", localapi.PathAccess, ``, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, "http://latchd"+tt.path, strings.NewReader(tt.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s %q = %d, want %d", tt.method, tt.path, tt.body, resp.StatusCode, tt.want)
		}
	}
}

func TestListenReplacesStaleSocketOnly(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "latchd.sock")

	// A socket left by a dead agent: bound, then its listener closed
	// without unlinking.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatal("stale socket missing")
	}
	ln, err := localapi.Listen(sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}

	// A live agent keeps its socket.
	if _, err := localapi.Listen(sock); err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Errorf("Listen over a live socket = %v, want an error", err)
	}
	ln.Close()
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Close: %v", err)
	}

	// Anything else at the path is not ours to remove.
	plain := filepath.Join(dir, "file")
	os.WriteFile(plain, nil, 0o600)
	if _, err := localapi.Listen(plain); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file = %v, want an error", err)
	}
}

func TestClientReportsMissingAgentOnOneLine(t *testing.T) {
	c := localapi.NewClient(filepath.Join(t.TempDir(), "none.sock"))
	_, err := c.Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is it running?") || strings.Contains(err.Error(), "\n") {
		t.Errorf("Status error = %v", err)
	}
}
