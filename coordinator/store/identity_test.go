package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/wire"
)

func version(t *testing.T, s *SQLite) uint64 {
	t.Helper()
	m, err := s.Meta(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m.NetmapVersion
}

func boolp(b bool) *bool { return &b }

func TestEnrolledNodeGetsItsKeyExpiryPostureAndCertExpiry(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	tests := []struct {
		name       string
		key        EnrollmentKey
		defaultExp time.Duration
		want       time.Duration // from enrollment; 0 means never
	}{
		{"key sets its node expiry", EnrollmentKey{NodeExpiry: 720 * time.Hour}, time.Hour, 720 * time.Hour},
		{"coordinator default", EnrollmentKey{}, 2 * time.Hour, 2 * time.Hour},
		{"built-in default", EnrollmentKey{}, 0, DefaultNodeKeyExpiry},
		{"tagged key without expiry", EnrollmentKey{NoNodeExpiry: true, Tags: []wire.Tag{"tag:server"}}, time.Hour, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, secret := addKey(t, s, tt.key)
			e := enrollment(id, secret, "h")
			e.DefaultNodeExpiry = tt.defaultExp
			e.Posture = &wire.Posture{OS: "linux", AgentVersion: "0.4.0", Firewall: boolp(true)}
			e.CertExpires = e.Now.Add(time.Hour)
			n, err := s.Enroll(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			want := time.Time{}
			if tt.want != 0 {
				want = e.Now.Add(tt.want)
			}
			got, err := s.Node(ctx, n.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range []Node{n, got} {
				if !x.KeyExpiry.Equal(want) || x.Expired {
					t.Errorf("key expiry %v (expired %v), want %v", x.KeyExpiry, x.Expired, want)
				}
				if x.Posture == nil || x.Posture.OS != "linux" || x.Posture.Firewall == nil || !*x.Posture.Firewall {
					t.Errorf("posture %+v", x.Posture)
				}
				if !x.CertExpires.Equal(e.Now.Add(time.Hour)) {
					t.Errorf("cert expires %v", x.CertExpires)
				}
				if !x.Wire().KeyExpiry.Equal(want) {
					t.Errorf("wire key expiry %v", x.Wire().KeyExpiry)
				}
			}
		})
	}
	// The key's settings round-trip.
	keys, err := s.EnrollmentKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var withExpiry, never int
	for _, k := range keys {
		if k.NodeExpiry == 720*time.Hour && !k.NoNodeExpiry {
			withExpiry++
		}
		if k.NodeExpiry == 0 && k.NoNodeExpiry {
			never++
		}
	}
	if withExpiry != 1 || never != 1 {
		t.Errorf("keys %+v", keys)
	}
}

func TestMaxUsesBoundsConcurrentEnrollments(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	const racers, maxUses = 20, 5
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true, MaxUses: maxUses})
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ok   int
		errs = map[string]int{}
	)
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Enroll(ctx, enrollment(id, secret, "racer"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrKeyUsedUp):
				errs["used up"]++
			default:
				errs[err.Error()]++
			}
		}()
	}
	wg.Wait()
	if ok != maxUses || errs["used up"] != racers-maxUses {
		t.Fatalf("%d enrolled, refusals %v; want %d and %d used up", ok, errs, maxUses, racers-maxUses)
	}
	if c := countNodes(t, s); c != maxUses {
		t.Fatalf("%d nodes, want %d", c, maxUses)
	}
	keys, _ := s.EnrollmentKeys(ctx)
	if keys[0].Uses != maxUses {
		t.Fatalf("uses %d", keys[0].Uses)
	}
}

// TestIdentityChangesBumpAndAuditOnlyWhenTheyChangeSomething runs each
// change twice: the first changes the node, bumps the netmap version and
// appends its audit record; the repeat does none of that.
func TestIdentityChangesBumpAndAuditOnlyWhenTheyChangeSomething(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true, Tags: []wire.Tag{"tag:a"}})
	n, err := s.Enroll(ctx, enrollment(id, secret, "n"))
	if err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)
	posture := &wire.Posture{OS: "linux", AgentVersion: "0.4.0"}
	tests := []struct {
		name   string
		action string
		do     func(ctx context.Context) error
		check  func(Node) bool
		bump   bool // whether the first call bumps the version
	}{
		{"quarantine", AuditNodeQuarantine, func(ctx context.Context) error {
			_, err := s.SetQuarantine(ctx, n.ID, true, "edr alert", at)
			return err
		}, func(x Node) bool { return x.Quarantined && x.QuarantineReason == "edr alert" }, true},
		{"quarantine reason only", AuditNodeQuarantine, func(ctx context.Context) error {
			_, err := s.SetQuarantine(ctx, n.ID, true, "edr alert 2", at)
			return err
		}, func(x Node) bool { return x.Quarantined && x.QuarantineReason == "edr alert 2" }, false},
		{"unquarantine", AuditNodeUnquarantine, func(ctx context.Context) error {
			_, err := s.SetQuarantine(ctx, n.ID, false, "ignored", at)
			return err
		}, func(x Node) bool { return !x.Quarantined && x.QuarantineReason == "" }, true},
		{"posture", AuditNodePosture, func(ctx context.Context) error {
			_, err := s.SetPosture(ctx, n.ID, posture, at)
			return err
		}, func(x Node) bool { return x.Posture != nil && x.Posture.AgentVersion == "0.4.0" }, true},
		{"tags", AuditNodeTags, func(ctx context.Context) error {
			_, err := s.SetTags(ctx, n.ID, []wire.Tag{"tag:b", "tag:a", "tag:b"}, at)
			return err
		}, func(x Node) bool { return len(x.Tags) == 2 && x.Tags[0] == "tag:a" && x.Tags[1] == "tag:b" }, true},
		{"expiry", AuditNodeExpiry, func(ctx context.Context) error {
			_, err := s.SetNodeExpiry(ctx, n.ID, at.Add(time.Hour), at)
			return err
		}, func(x Node) bool { return x.KeyExpiry.Equal(at.Add(time.Hour)) && !x.Expired }, true},
		{"expire now", AuditNodeExpiry, func(ctx context.Context) error {
			_, err := s.SetNodeExpiry(ctx, n.ID, at, at)
			return err
		}, func(x Node) bool { return x.Expired }, true},
		{"never (tagged)", AuditNodeExpiry, func(ctx context.Context) error {
			_, err := s.SetNodeExpiry(ctx, n.ID, time.Time{}, at)
			return err
		}, func(x Node) bool { return x.KeyExpiry.IsZero() && !x.Expired }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for round := range 2 {
				v0, a0 := version(t, s), auditCount(t, s)
				if err := tt.do(audit.With(ctx, audit.Entry{Time: at, Actor: "token:x", Action: tt.action, Target: "node:" + string(n.ID)})); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				got, err := s.Node(ctx, n.ID)
				if err != nil {
					t.Fatal(err)
				}
				if !tt.check(got) {
					t.Fatalf("round %d: node %+v", round, got)
				}
				wantBump := tt.bump && round == 0
				if bumped := version(t, s) > v0; bumped != wantBump {
					t.Errorf("round %d: version bumped %v, want %v", round, bumped, wantBump)
				}
				if added := auditCount(t, s) - a0; added != 1-round {
					t.Errorf("round %d: %d audit records, want %d", round, added, 1-round)
				}
			}
		})
	}
}

func TestNodeExpiryIsSweptAtItsInstant(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true})
	tagged, tsecret := addKey(t, s, EnrollmentKey{Reusable: true, NoNodeExpiry: true, Tags: []wire.Tag{"tag:s"}})
	enroll := func(keyID, sec string, exp time.Duration) Node {
		e := enrollment(keyID, sec, "n")
		e.DefaultNodeExpiry = exp
		n, err := s.Enroll(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	early, late := enroll(id, secret, time.Hour), enroll(id, secret, 2*time.Hour)
	enroll(tagged, tsecret, time.Hour) // never expires

	steps := []struct {
		now      time.Time
		expired  []wire.NodeID
		next     time.Time // zero: none
		hasNext  bool
		bumpWant bool
	}{
		{early.KeyExpiry.Add(-time.Microsecond), nil, early.KeyExpiry, true, false},
		{early.KeyExpiry, []wire.NodeID{early.ID}, late.KeyExpiry, true, true},
		{early.KeyExpiry.Add(time.Minute), nil, late.KeyExpiry, true, false},
		{late.KeyExpiry.Add(time.Hour), []wire.NodeID{late.ID}, time.Time{}, false, true},
	}
	for i, st := range steps {
		v0 := version(t, s)
		got, err := s.ExpireNodes(ctx, st.now)
		if err != nil {
			t.Fatal(err)
		}
		var ids []wire.NodeID
		for _, n := range got {
			ids = append(ids, n.ID)
			if !n.Expired {
				t.Errorf("step %d: returned node not marked expired", i)
			}
		}
		if len(ids) != len(st.expired) || len(ids) > 0 && ids[0] != st.expired[0] {
			t.Errorf("step %d: expired %v, want %v", i, ids, st.expired)
		}
		if bumped := version(t, s) > v0; bumped != st.bumpWant {
			t.Errorf("step %d: bumped %v", i, bumped)
		}
		next, ok, err := s.NextNodeExpiry(ctx)
		if err != nil || ok != st.hasNext || !next.Equal(st.next) {
			t.Errorf("step %d: next %v %v %v, want %v %v", i, next, ok, err, st.next, st.hasNext)
		}
	}
	// The expiry is audited by the system.
	recs, err := s.AuditRecords(ctx, AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Action == AuditNodeExpire && r.Actor == audit.ActorSystem {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d node.expire records, want 2", n)
	}
	// An admin extends the expired node: it is back.
	revived, err := s.SetNodeExpiry(ctx, early.ID, late.KeyExpiry.Add(24*time.Hour), late.KeyExpiry.Add(time.Hour))
	if err != nil || revived.Expired {
		t.Fatalf("revive: %+v %v", revived, err)
	}
}

func TestExpiredNodeCannotRecordACertificate(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true})
	e := enrollment(id, secret, "n")
	e.DefaultNodeExpiry = time.Hour
	n, err := s.Enroll(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name string
		at   time.Time
		want error
	}{
		{"before expiry", n.KeyExpiry.Add(-time.Second), nil},
		{"at expiry, not yet swept", n.KeyExpiry, ErrNodeExpired},
		{"after expiry", n.KeyExpiry.Add(time.Hour), ErrNodeExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.SetCert(ctx, n.ID, pub, tt.at.Add(time.Hour), tt.at)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			got, _ := s.Node(ctx, n.ID)
			if tt.want == nil && (!got.CertKey.Equal(pub) || !got.CertExpires.Equal(micro(tt.at.Add(time.Hour)))) {
				t.Fatalf("certificate not recorded: %+v", got)
			}
		})
	}
	// Swept, it stays refused even at an earlier clock.
	if _, err := s.ExpireNodes(ctx, n.KeyExpiry); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCert(ctx, n.ID, pub, t0, n.KeyExpiry.Add(-time.Hour)); !errors.Is(err, ErrNodeExpired) {
		t.Fatalf("swept node: %v", err)
	}
}

func TestOnlyTaggedNodesMayNeverExpire(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true})
	untagged, err := s.Enroll(ctx, enrollment(id, secret, "u"))
	if err != nil {
		t.Fatal(err)
	}
	tid, tsecret := addKey(t, s, EnrollmentKey{Reusable: true, NoNodeExpiry: true, Tags: []wire.Tag{"tag:s"}})
	server, err := s.Enroll(ctx, enrollment(tid, tsecret, "s"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		do   func() error
	}{
		{"never on an untagged node", func() error { _, err := s.SetNodeExpiry(ctx, untagged.ID, time.Time{}, t0); return err }},
		{"untag a node that never expires", func() error { _, err := s.SetTags(ctx, server.ID, nil, t0); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v0 := version(t, s)
			if err := tt.do(); !errors.Is(err, ErrNeverExpiresUntagged) {
				t.Fatalf("err %v", err)
			}
			if version(t, s) != v0 {
				t.Fatal("refused change bumped the version")
			}
		})
	}
	for _, id := range []wire.NodeID{"nmissing"} {
		if _, err := s.SetQuarantine(ctx, id, true, "", t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("quarantine missing node: %v", err)
		}
		if _, err := s.SetPosture(ctx, id, nil, t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("posture of missing node: %v", err)
		}
		if _, err := s.SetTags(ctx, id, nil, t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("tags of missing node: %v", err)
		}
		if _, err := s.SetNodeExpiry(ctx, id, t0, t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("expiry of missing node: %v", err)
		}
	}
}

// BenchmarkSetCert measures recording a renewed certificate, the store's
// share of a renewal: one durable (fsynced) write transaction.
//
//	go test -run '^$' -bench BenchmarkSetCert ./coordinator/store
func BenchmarkSetCert(b *testing.B) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, b.TempDir()+"/latch.db", Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Init(ctx, "test.internal"); err != nil {
		b.Fatal(err)
	}
	secret := randSecret()
	if err := s.CreateEnrollmentKey(ctx, EnrollmentKey{ID: "kkkkkkkkkkkk", Reusable: true, Created: t0, Expires: t0.Add(time.Hour)}, HashSecret(secret)); err != nil {
		b.Fatal(err)
	}
	n, err := s.Enroll(ctx, enrollment("kkkkkkkkkkkk", secret, "n"))
	if err != nil {
		b.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	b.ResetTimer()
	for i := range b.N {
		at := t0.Add(time.Duration(i) * time.Second)
		if err := s.SetCert(ctx, n.ID, pub, at.Add(time.Hour), at); err != nil {
			b.Fatal(err)
		}
	}
}
