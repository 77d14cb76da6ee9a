package agent_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/agent"
	"github.com/latchnet/latch/agent/internal/fakecoord"
	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/agent/state"
	"github.com/latchnet/latch/overlay"
	"github.com/latchnet/latch/wire"
)

func TestUpEnrollsAndConfiguresTheOverlay(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	db := s.AddPeer("db-1", "198.18.0.3:51820")
	h := start(t, t.TempDir(), nil)
	if st := h.status(); st.State != localapi.StateNeedsLogin {
		t.Fatalf("state before enrolling = %q, want %q", st.State, localapi.StateNeedsLogin)
	}

	resp := h.enroll(s)
	if !resp.Enrolled || resp.Name != "host-a" || len(resp.Addresses) != 2 {
		t.Fatalf("Up = %+v", resp)
	}
	st := h.state()
	if st.Identity.NodeID != resp.NodeID || st.Identity.Coordinator != s.URL || st.Identity.TrustDomain != fakecoord.TrustDomain {
		t.Errorf("stored identity = %+v", st.Identity)
	}
	nodes := s.Nodes()
	self := nodes[len(nodes)-1]
	if self.Key != wire.NodePublic(st.WireGuardKey.PublicKey()) {
		t.Error("coordinator holds another WireGuard key than the stored one")
	}
	if want := []netip.AddrPort{netip.AddrPortFrom(underlay, 51820)}; !slices.Equal(self.Endpoints, want) {
		t.Errorf("enrolled endpoints = %v, want %v", self.Endpoints, want)
	}

	e := h.engine()
	if e.Options.Interface != testIface || e.Options.MTU != 1340 {
		t.Errorf("engine options = %+v, want interface %s, MTU 1340", e.Options, testIface)
	}
	cfgs := e.Configs()
	if len(cfgs) != 1 {
		t.Fatalf("%d Reconfigs, want 1", len(cfgs))
	}
	got := cfgs[0]
	if got.PrivateKey != st.WireGuardKey || got.ListenPort != 51820 || !slices.Equal(got.Addresses, resp.Addresses) {
		t.Errorf("config key/port/addresses = %v/%d/%v", got.PrivateKey == st.WireGuardKey, got.ListenPort, got.Addresses)
	}
	wantRoutes := []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("fd7a:1:2::/48")}
	if !slices.Equal(got.Routes, wantRoutes) {
		t.Errorf("routes = %v, want %v", got.Routes, wantRoutes)
	}
	wantPeer := overlay.Peer{Key: db.Key, AllowedIPs: db.Addresses, Endpoint: db.Endpoints[0], Keepalive: 25 * time.Second}
	if len(got.Peers) != 1 || got.Peers[0].Key != wantPeer.Key || got.Peers[0].Endpoint != wantPeer.Endpoint ||
		!slices.Equal(got.Peers[0].AllowedIPs, wantPeer.AllowedIPs) || got.Peers[0].Keepalive != wantPeer.Keepalive {
		t.Errorf("peers = %+v, want [%+v]", got.Peers, wantPeer)
	}
	if len(got.Rules) != 1 || got.Rules[0].ID != "interim-allow-peers" {
		t.Errorf("rules = %+v", got.Rules)
	}

	status := h.status()
	if status.State != localapi.StateConnected || status.Self == nil || status.Self.Name != "host-a" || len(status.Peers) != 1 || status.Peers[0].Name != "db-1" {
		t.Errorf("status = %+v", status)
	}
}

func TestNetmapAndDeltasDriveOneReconfigPerChange(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{})
	a := s.AddPeer("a", "198.18.0.2:51820")
	h := start(t, t.TempDir(), nil)
	up := h.upAsync(localapi.UpRequest{Coordinator: s.URL, AuthKey: s.AuthKey})
	st := nextStream(t, s)
	nm := s.Netmap(st.Node)
	nm.Version = 10
	sendNetmap(t, st, nm)
	if r := waitUp(t, up); r.err != nil {
		t.Fatalf("Up: %v", r.err)
	}

	b := s.AddPeer("b", "")
	b2 := b
	b2.Tags = []wire.Tag{"tag:new"}
	steps := []*wire.Delta{
		{PrevVersion: 10, Version: 11, Upsert: []wire.Peer{{Node: b}}},
		{PrevVersion: 11, Version: 12, Remove: []wire.NodeID{a.ID}},
		{PrevVersion: 12, Version: 13, Upsert: []wire.Peer{{Node: b2}}}, // nothing the data plane sees
		{PrevVersion: 13, Version: 14, RulesChanged: true},              // rules now empty
	}
	for _, d := range steps {
		sendDelta(t, st, d)
	}
	waitFor(t, "netmap version 14", func() bool { return h.status().NetmapVersion == 14 })

	cfgs := h.engine().Configs()
	type view struct {
		peers []wire.NodePublic
		rules int
	}
	var got []view
	for _, c := range cfgs {
		v := view{rules: len(c.Rules)}
		for _, p := range c.Peers {
			v.peers = append(v.peers, p.Key)
		}
		got = append(got, v)
	}
	sorted := func(ks ...wire.NodePublic) []wire.NodePublic {
		slices.SortFunc(ks, func(x, y wire.NodePublic) int { return bytes.Compare(x[:], y[:]) })
		return ks
	}
	want := []view{
		{peers: []wire.NodePublic{a.Key}, rules: 1},
		{peers: sorted(a.Key, b.Key), rules: 1},
		{peers: []wire.NodePublic{b.Key}, rules: 1},
		{peers: []wire.NodePublic{b.Key}, rules: 0},
	}
	if len(got) != len(want) {
		t.Fatalf("%d Reconfigs, want %d (one per data-plane change): %+v", len(got), len(want), got)
	}
	for i := range want {
		if !slices.Equal(got[i].peers, want[i].peers) || got[i].rules != want[i].rules {
			t.Errorf("Reconfig %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, streams, _ := s.Counts(); streams != 1 {
		t.Errorf("%d streams, want 1 (deltas applied in place)", streams)
	}
	// The delta that changed tags reached the status even without a Reconfig.
	if peers := h.status().Peers; len(peers) != 1 || !slices.Equal(peers[0].Tags, b2.Tags) {
		t.Errorf("status peers = %+v", peers)
	}
}

func TestVersionGapReconnectsForAFullMap(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{})
	h := start(t, t.TempDir(), nil)
	up := h.upAsync(localapi.UpRequest{Coordinator: s.URL, AuthKey: s.AuthKey})
	st := nextStream(t, s)
	nm := s.Netmap(st.Node)
	nm.Version = 10
	sendNetmap(t, st, nm)
	if r := waitUp(t, up); r.err != nil {
		t.Fatalf("Up: %v", r.err)
	}

	sendDelta(t, st, &wire.Delta{PrevVersion: 12, Version: 13})
	select {
	case <-st.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("agent kept a stream whose delta did not apply")
	}
	st2 := nextStream(t, s)
	p := s.AddPeer("late", "")
	full := s.Netmap(st2.Node)
	full.Version = 20
	sendNetmap(t, st2, full)
	waitFor(t, "the full map after reconnecting", func() bool { return h.status().NetmapVersion == 20 })
	cfgs := h.engine().Configs()
	if last := cfgs[len(cfgs)-1]; len(last.Peers) != 1 || last.Peers[0].Key != p.Key {
		t.Errorf("config after the full map = %+v", last.Peers)
	}
	if n := len(h.engines.Engines()); n != 1 {
		t.Errorf("%d engines created; a reconnect must not rebuild the data plane", n)
	}
}

func TestKeepaliveSilenceReconnectsWithoutTouchingTheDataPlane(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	s.AddPeer("db-1", "198.18.0.3:51820")
	h := start(t, t.TempDir(), nil)
	h.enroll(s)
	st := nextStream(t, s)
	st.Send(wire.StreamMessage{Type: wire.MsgKeepAlive, KeepAlive: 20 * time.Millisecond})
	// Then silence: the agent must give up on this stream and open another.
	select {
	case <-st.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("agent kept a silent stream")
	}
	nextStream(t, s)
	waitFor(t, "reconnected", func() bool { return h.status().State == localapi.StateConnected })
	e := h.engine()
	if e.Closed() || len(e.Configs()) != 1 {
		t.Errorf("data plane changed across a reconnect with the same netmap: closed=%v reconfigs=%d", e.Closed(), len(e.Configs()))
	}
	if !strings.Contains(h.logs.String(), "silent") {
		t.Error("the reason for reconnecting was not logged")
	}
}

func TestRestartWithCoordinatorDownRunsFromCachedNetmap(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	s.AddPeer("db-1", "198.18.0.3:51820")
	dir := t.TempDir()
	h := start(t, dir, nil)
	h.enroll(s)
	before := h.engine().Configs()[0]
	h.stop()
	if !h.engine().Closed() {
		t.Fatal("shutdown left the engine open")
	}
	s.Close()

	h2 := start(t, dir, nil)
	waitFor(t, "engine from the cached netmap", func() bool { return h2.engines.Last() != nil && len(h2.engines.Last().Configs()) == 1 })
	after := h2.engine().Configs()[0]
	if after.PrivateKey != before.PrivateKey || len(after.Peers) != 1 || after.Peers[0].Key != before.Peers[0].Key ||
		!slices.Equal(after.Addresses, before.Addresses) || len(after.Rules) != len(before.Rules) {
		t.Errorf("config from cache = %+v, want %+v", after, before)
	}
	waitFor(t, "a connection error", func() bool { return h2.status().LastError != "" })
	if st := h2.status(); st.State != localapi.StateConnecting || len(st.Peers) != 1 {
		t.Errorf("status with coordinator down = %+v", st)
	}
	_, err := h2.ag.Up(context.Background(), localapi.UpRequest{Timeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "cached netmap") {
		t.Errorf("Up with coordinator down = %v", err)
	}
	if h2.engine().Closed() {
		t.Error("a failed Up tore the data plane down")
	}
}

func TestDeletedNodeStopsRetryingAndKeepsState(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	h := start(t, t.TempDir(), nil)
	resp := h.enroll(s)
	s.DeleteNode(resp.NodeID)
	s.CloseStreams()
	waitFor(t, "refused state", func() bool { return h.status().State == localapi.StateRefused })
	st := h.status()
	if !strings.Contains(st.LastError, "node not found") || !strings.Contains(st.LastError, "enroll again") {
		t.Errorf("last error = %q", st.LastError)
	}
	attempts := s.StreamAttempts()
	if _, err := os.Stat(filepath.Join(h.dir, state.FileIdentity)); err != nil {
		t.Errorf("identity gone after refusal: %v", err)
	}
	// Nothing retries in the background; Up tries once more.
	up := h.upAsync(localapi.UpRequest{Timeout: 5 * time.Second})
	r := waitUp(t, up)
	if r.err == nil || !strings.Contains(r.err.Error(), "node not found") {
		t.Errorf("Up without a key after refusal = %v", r.err)
	}
	if n := s.StreamAttempts(); n != attempts+1 {
		t.Errorf("stream attempts = %d, want exactly one more (from Up) than %d", n, attempts)
	}

	// A new key enrolls a new identity in its place.
	resp2 := h.enroll(s)
	if !resp2.Enrolled || resp2.NodeID == resp.NodeID {
		t.Errorf("re-enrollment = %+v", resp2)
	}
	if st := h.status(); st.State != localapi.StateConnected {
		t.Errorf("state after re-enrolling = %q", st.State)
	}
}

func TestDownRemovesInterfaceKeepsEnrollmentAndSurvivesRestart(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	dir := t.TempDir()
	h := start(t, dir, nil)
	resp := h.enroll(s)
	if err := h.ag.Down(context.Background()); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if !h.engine().Closed() {
		t.Error("Down left the interface up")
	}
	if st := h.status(); st.State != localapi.StateStopped || st.Self == nil || st.Self.ID != resp.NodeID {
		t.Errorf("status after Down = %+v", st)
	}
	h.stop()

	// Restarted after down: stays down.
	h2 := start(t, dir, nil)
	if st := h2.status(); st.State != localapi.StateStopped {
		t.Errorf("state after restart = %q, want stopped", st.State)
	}
	if h2.engines.Last() != nil {
		t.Error("engine created although the node was brought down")
	}
	// Up without a key reconnects as the same node.
	r, err := h2.ag.Up(context.Background(), localapi.UpRequest{Timeout: 10 * time.Second})
	if err != nil || r.Enrolled || r.NodeID != resp.NodeID {
		t.Fatalf("Up = %+v, %v", r, err)
	}
	if enrolls, _, _ := s.Counts(); enrolls != 1 {
		t.Errorf("%d enrollments, want 1", enrolls)
	}
}

func TestEnrollmentFailuresAreOneLineAndStoreNothing(t *testing.T) {
	tests := []struct {
		name    string
		opts    fakecoord.Options
		fail    string
		key     func(s *fakecoord.Server) string
		wantErr string
	}{
		{"coordinator refuses", fakecoord.Options{}, "enrollment key expired", nil, "enrollment refused: enrollment key expired"},
		{"coordinator of another CA", fakecoord.Options{Present: fakecoord.PresentOtherCA}, "", nil, "does not chain to the pinned CA"},
		{"malformed key", fakecoord.Options{}, "", func(*fakecoord.Server) string { return "latchkey_nope" }, "malformed enrollment key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakecoord.New(t, tt.opts)
			s.FailEnrollments(tt.fail)
			h := start(t, t.TempDir(), nil)
			key := s.AuthKey
			if tt.key != nil {
				key = tt.key(s)
			}
			_, err := h.ag.Up(context.Background(), localapi.UpRequest{Coordinator: s.URL, AuthKey: key})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Up error = %v, want one line containing %q", err, tt.wantErr)
			}
			ents, _ := os.ReadDir(h.dir)
			if len(ents) != 0 {
				t.Errorf("state dir holds %d files after a failed enrollment", len(ents))
			}
			if st := h.status(); st.State != localapi.StateNeedsLogin {
				t.Errorf("state = %q", st.State)
			}
		})
	}
}

func TestUpWithoutEnrollmentNeedsKeyAndCoordinator(t *testing.T) {
	h := start(t, t.TempDir(), nil)
	_, err := h.ag.Up(context.Background(), localapi.UpRequest{})
	var le *localapi.Error
	if !errors.As(err, &le) || le.Status != 400 || !strings.Contains(err.Error(), "--auth-key") {
		t.Errorf("Up = %v, want a 400 naming --auth-key", err)
	}
}

func TestEngineFailureFailsUp(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	h := start(t, t.TempDir(), nil)
	h.engines.FailNew(errors.New("operation not permitted"))
	_, err := h.ag.Up(context.Background(), localapi.UpRequest{Coordinator: s.URL, AuthKey: s.AuthKey, Timeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "creating the overlay interface: operation not permitted") {
		t.Fatalf("Up = %v", err)
	}
}

func TestStateIsPrivateAndSecretsNeverLogged(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true, CertLifetime: 2 * time.Second})
	h := start(t, t.TempDir(), nil)
	h.enroll(s)
	// Let a renewal and an endpoint report happen too, so their logs count.
	waitFor(t, "a certificate renewal", func() bool { return strings.Contains(h.logs.String(), "renewed node certificate") })
	h.stop()

	fi, err := os.Stat(h.dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode = %v", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(h.dir)
	if len(ents) < 6 {
		t.Errorf("state dir holds only %d files", len(ents))
	}
	for _, e := range ents {
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}

	st := h.state()
	logs := h.logs.String()
	certKeyPEM, _ := os.ReadFile(filepath.Join(h.dir, state.FileCertKey))
	pemBody := strings.Join(strings.Split(string(certKeyPEM), "\n")[1:2], "")
	secrets := map[string]string{
		"enrollment key":         s.AuthKey,
		"enrollment key secret":  strings.Split(s.AuthKey, "_")[2],
		"WireGuard private key":  st.WireGuardKey.String(),
		"certificate key (PEM)":  pemBody,
		"certificate key (seed)": string(st.CertKey.Seed()),
	}
	for what, secret := range secrets {
		if secret == "" {
			t.Fatalf("empty %s", what)
		}
		if strings.Contains(logs, secret) {
			t.Errorf("the logs contain the %s", what)
		}
	}
	if !strings.Contains(logs, "enrolled") || !strings.Contains(logs, "renewed node certificate") {
		t.Errorf("logs lack the enrollment and renewal lines:\n%s", logs)
	}
}

func TestCertificateRenewedBeforeExpiry(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true, CertLifetime: 2 * time.Second})
	h := start(t, t.TempDir(), nil)
	h.enroll(s)
	first := h.state().Cert
	waitFor(t, "a renewed certificate on disk", func() bool {
		d, _ := state.Open(h.dir)
		st, err := d.Load()
		return err == nil && st.Cert.NotAfter.After(first.NotAfter)
	})
	if !first.NotAfter.After(time.Now()) {
		t.Error("renewal happened only after the certificate expired")
	}
	waitFor(t, "status showing the new expiry", func() bool { return h.status().CertExpires.After(first.NotAfter) })
	// The renewed certificate authenticates new connections.
	s.CloseStreams()
	_, before, _ := s.Counts()
	waitFor(t, "a reconnect with the renewed certificate", func() bool {
		_, n, _ := s.Counts()
		return n > before && h.status().State == localapi.StateConnected
	})
}

func TestEndpointsReportedWhenTheyChange(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	h := start(t, t.TempDir(), nil)
	h.enroll(s)
	if n := len(s.Updates()); n != 0 {
		t.Errorf("%d updates although the coordinator knew the endpoints", n)
	}
	moved := netip.MustParseAddr("198.18.0.77")
	h.setAddrs(agent.InterfaceAddr{Interface: "eth0", Up: true, Addr: moved})
	waitFor(t, "an endpoint update", func() bool { return len(s.Updates()) > 0 })
	want := []netip.AddrPort{netip.AddrPortFrom(moved, 51820)}
	if got := s.Updates()[0].Endpoints; !slices.Equal(got, want) {
		t.Errorf("reported endpoints = %v, want %v", got, want)
	}
}

func TestPingByNameOrAddress(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	db := s.AddPeer("db-1", "")
	h := start(t, t.TempDir(), nil)
	ctx := context.Background()
	if err := h.ag.Ping(ctx, localapi.PingRequest{Peer: "db-1"}, func(localapi.PingEvent) {}); err == nil {
		t.Error("Ping while down succeeded")
	}
	h.enroll(s)
	v4 := db.Addresses[0].Addr()
	for _, q := range []string{"db-1", v4.String(), db.Addresses[1].Addr().String()} {
		var evs []localapi.PingEvent
		err := h.ag.Ping(ctx, localapi.PingRequest{Peer: q, Count: 3, Interval: time.Millisecond}, func(ev localapi.PingEvent) { evs = append(evs, ev) })
		if err != nil {
			t.Fatalf("Ping(%q): %v", q, err)
		}
		if len(evs) != 4 || evs[0].Target == nil || evs[0].Target.Address != v4 || evs[0].Target.Name != "db-1" {
			t.Fatalf("Ping(%q) events = %+v", q, evs)
		}
		for i, ev := range evs[1:] {
			if ev.Reply == nil || ev.Reply.Seq != i+1 || ev.Reply.RTT != time.Duration(i+1)*time.Millisecond {
				t.Errorf("reply %d = %+v", i, ev.Reply)
			}
		}
	}
	h.mu.Lock()
	h.pingErr = errors.New("timeout")
	h.mu.Unlock()
	var last localapi.PingEvent
	if err := h.ag.Ping(ctx, localapi.PingRequest{Peer: "db-1", Count: 1}, func(ev localapi.PingEvent) { last = ev }); err != nil || last.Reply == nil || last.Reply.Error != "timeout" {
		t.Errorf("lost ping: err %v, last event %+v", err, last)
	}
	var le *localapi.Error
	if err := h.ag.Ping(ctx, localapi.PingRequest{Peer: "nobody"}, func(localapi.PingEvent) {}); !errors.As(err, &le) || le.Status != 404 {
		t.Errorf("Ping of an unknown peer = %v, want 404", err)
	}
}

func TestStatusCarriesEngineCounters(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	db := s.AddPeer("db-1", "198.18.0.3:51820")
	h := start(t, t.TempDir(), nil)
	h.enroll(s)
	hs := time.Now().Add(-3 * time.Second).Truncate(time.Second)
	h.engine().SetStatus(agent.EngineStatus{Peers: []agent.EnginePeer{{
		Key: db.Key, Endpoint: netip.MustParseAddrPort("198.18.0.3:51820"), LastHandshake: hs, RxBytes: 100, TxBytes: 200,
	}}})
	st := h.status()
	if len(st.Peers) != 1 {
		t.Fatalf("peers = %+v", st.Peers)
	}
	p := st.Peers[0]
	if p.Name != "db-1" || !p.LastHandshake.Equal(hs) || p.RxBytes != 100 || p.TxBytes != 200 || p.Endpoint.String() != "198.18.0.3:51820" {
		t.Errorf("peer status = %+v", p)
	}
	if st.Interface != testIface || st.CertExpires.IsZero() || st.Coordinator != s.URL {
		t.Errorf("status = %+v", st)
	}
}

func TestCorruptStateFailsNew(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, state.FileIdentity), []byte("{"), 0o600)
	_, err := agent.New(agent.Config{StateDir: dir, NewEngine: (&enginetestFactory{}).New})
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("New on a corrupt state dir = %v", err)
	}
}

type enginetestFactory struct{}

func (enginetestFactory) New(agent.EngineOptions) (agent.Engine, error) {
	return nil, errors.New("unused")
}

func TestTwoAgentsLearnOfEachOther(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true, PushChanges: true})
	a := start(t, t.TempDir(), nil)
	ra := a.enroll(s)
	b := start(t, t.TempDir(), func(c *agent.Config) {
		c.InterfaceAddrs = func() ([]agent.InterfaceAddr, error) {
			return []agent.InterfaceAddr{{Interface: "eth0", Up: true, Addr: netip.MustParseAddr("198.18.0.6")}}, nil
		}
	})
	rb := b.enroll(s)

	peerOf := func(h *harness, want wire.NodeID) func() bool {
		return func() bool {
			cfgs := h.engines.Last().Configs()
			if len(cfgs) == 0 {
				return false
			}
			st := h.status()
			return len(cfgs[len(cfgs)-1].Peers) == 1 && len(st.Peers) == 1 && st.Peers[0].ID == want
		}
	}
	waitFor(t, "a to see b", peerOf(a, rb.NodeID))
	waitFor(t, "b to see a", peerOf(b, ra.NodeID))
	cfgs := a.engine().Configs()
	if ep := cfgs[len(cfgs)-1].Peers[0].Endpoint; ep != netip.MustParseAddrPort("198.18.0.6:51820") {
		t.Errorf("a reaches b at %v, want b's enrolled endpoint", ep)
	}
}
