package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func openTest(t *testing.T, opts Options) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "latch.db")
	s, err := OpenSQLite(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Init(context.Background(), "test.internal"); err != nil {
		t.Fatal(err)
	}
	return s, path
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// addKey stores an enrollment key and returns its ID and secret.
func addKey(t *testing.T, s Store, k EnrollmentKey) (string, string) {
	t.Helper()
	if k.ID == "" {
		k.ID = randHex(6)
	}
	if k.Created.IsZero() {
		k.Created = t0
	}
	if k.Expires.IsZero() {
		k.Expires = t0.Add(24 * time.Hour)
	}
	secret := randSecret()
	if err := s.CreateEnrollmentKey(context.Background(), k, HashSecret(secret)); err != nil {
		t.Fatal(err)
	}
	return k.ID, secret
}

func newWGKey() wire.NodePublic {
	var k wire.NodePublic
	rand.Read(k[:])
	return k
}

func enrollment(keyID, secret, host string) Enrollment {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	return Enrollment{
		NodeID:       NewNodeID(),
		KeyID:        keyID,
		SecretHash:   HashSecret(secret),
		Hostname:     host,
		WireGuardKey: newWGKey(),
		CertKey:      pub,
		Endpoints:    []netip.AddrPort{netip.MustParseAddrPort("198.18.0.1:51820")},
		Now:          t0.Add(time.Minute),
	}
}

func countNodes(t *testing.T, s Store) int {
	t.Helper()
	ns, err := s.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(ns)
}

func TestMigrationsAreIdempotent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "latch.db")
	var ula netip.Prefix
	for i := range 3 {
		s, err := OpenSQLite(ctx, path, Options{})
		if err != nil {
			t.Fatalf("open #%d: %v", i, err)
		}
		m, err := s.Init(ctx, "test.internal")
		if err != nil {
			t.Fatalf("init #%d: %v", i, err)
		}
		if i == 0 {
			ula = m.ULA
		} else if m.ULA != ula {
			t.Errorf("open #%d: ULA changed from %v to %v", i, ula, m.ULA)
		}
		var n int
		if err := s.w.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		ms, _ := loadMigrations()
		if n != len(ms) {
			t.Errorf("open #%d: %d migrations recorded, want %d", i, n, len(ms))
		}
		if err := s.Check(ctx); err != nil {
			t.Error(err)
		}
		s.Close()
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t, Options{})
	if _, err := s.w.Exec(`INSERT INTO schema_migrations (version, name, applied) VALUES (999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := OpenSQLite(ctx, path, Options{}); err == nil {
		t.Fatal("opened a database with a newer schema")
	}
}

func TestTrustDomainIsFixedAtFirstStart(t *testing.T) {
	s, _ := openTest(t, Options{})
	if _, err := s.Init(context.Background(), "other.internal"); err == nil {
		t.Fatal("Init accepted a different trust domain")
	}
}

func TestEnrollmentKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		key     EnrollmentKey
		revoke  bool
		mangle  func(*Enrollment)
		enrolls int   // successful enrollments before the checked one
		wantErr error // of the checked enrollment
	}{
		{name: "one-off works once", key: EnrollmentKey{}, enrolls: 1, wantErr: ErrKeyUsed},
		{name: "reusable works many times", key: EnrollmentKey{Reusable: true}, enrolls: 5},
		{name: "expired", key: EnrollmentKey{Expires: t0.Add(30 * time.Second)}, wantErr: ErrKeyExpired},
		{name: "expires exactly now", key: EnrollmentKey{Expires: t0.Add(time.Minute)}, wantErr: ErrKeyExpired},
		{name: "revoked", key: EnrollmentKey{Reusable: true}, revoke: true, wantErr: ErrKeyRevoked},
		{name: "wrong secret", mangle: func(e *Enrollment) { e.SecretHash = HashSecret(randSecret()) }, wantErr: ErrInvalidKey},
		{name: "unknown id", mangle: func(e *Enrollment) { e.KeyID = randHex(6) }, wantErr: ErrInvalidKey},
		{name: "empty hash", mangle: func(e *Enrollment) { e.SecretHash = nil }, wantErr: ErrInvalidKey},
		{name: "tag not on key", key: EnrollmentKey{Tags: []wire.Tag{"tag:web"}},
			mangle: func(e *Enrollment) { e.Tags = []wire.Tag{"tag:db"} }, wantErr: ErrTagNotAllowed},
		{name: "revoked and wrong secret says invalid", revoke: true,
			mangle: func(e *Enrollment) { e.SecretHash = HashSecret(randSecret()) }, wantErr: ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTest(t, Options{})
			id, secret := addKey(t, s, tt.key)
			if tt.revoke {
				if _, err := s.RevokeEnrollmentKey(ctx, id, t0); err != nil {
					t.Fatal(err)
				}
			}
			for i := range tt.enrolls {
				if _, err := s.Enroll(ctx, enrollment(id, secret, "host")); err != nil {
					t.Fatalf("enrollment %d: %v", i, err)
				}
			}
			before := countNodes(t, s)
			mBefore, _ := s.Meta(ctx)
			e := enrollment(id, secret, "checked")
			if tt.mangle != nil {
				tt.mangle(&e)
			}
			_, err := s.Enroll(ctx, e)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Enroll: got %v, want %v", err, tt.wantErr)
			}
			if err == nil {
				return
			}
			if n := countNodes(t, s); n != before {
				t.Errorf("failed enrollment changed node count %d -> %d", before, n)
			}
			if m, _ := s.Meta(ctx); m.NetmapVersion != mBefore.NetmapVersion {
				t.Errorf("failed enrollment bumped netmap version")
			}
			keys, _ := s.EnrollmentKeys(ctx)
			if len(keys) != 1 || keys[0].Uses != tt.enrolls {
				t.Errorf("key uses = %+v, want %d", keys, tt.enrolls)
			}
		})
	}
}

func TestConcurrentOneOffEnrollmentCreatesOneNode(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{})
	const n = 20
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ok   int
		errs = map[error]int{}
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Enroll(ctx, enrollment(id, secret, "racer"))
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
			} else if errors.Is(err, ErrKeyUsed) {
				errs[ErrKeyUsed]++
			} else {
				t.Errorf("enrollment %d: unexpected error %v", i, err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 || errs[ErrKeyUsed] != n-1 {
		t.Fatalf("%d succeeded, %d refused as used; want 1 and %d", ok, errs[ErrKeyUsed], n-1)
	}
	if c := countNodes(t, s); c != 1 {
		t.Fatalf("%d nodes exist, want 1", c)
	}
}

func TestAddressesAreUniqueAndNeverNetworkOrBroadcast(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true})
	m, _ := s.Meta(ctx)
	seen4, seen6 := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	const n = 600 // crosses 100.64.0.255, 100.64.1.0, ..., 100.64.2.0
	for i := range n {
		node, err := s.Enroll(ctx, enrollment(id, secret, "h"))
		if err != nil {
			t.Fatalf("enrollment %d: %v", i, err)
		}
		v4 := node.IPv4.As4()
		if v4[3] == 0 || v4[3] == 255 {
			t.Errorf("node %d got %v", i, node.IPv4)
		}
		if !netip.MustParsePrefix("100.64.0.0/10").Contains(node.IPv4) || !m.ULA.Contains(node.IPv6) {
			t.Errorf("node %d got %v %v outside the pools", i, node.IPv4, node.IPv6)
		}
		v6 := node.IPv6.As16()
		if binary.BigEndian.Uint32(v6[12:]) != binary.BigEndian.Uint32(v4[:])-0x64400000 {
			t.Errorf("node %d: IPv6 %v does not carry the index of %v", i, node.IPv6, node.IPv4)
		}
		if seen4[node.IPv4] || seen6[node.IPv6] {
			t.Fatalf("node %d: address %v / %v handed out twice", i, node.IPv4, node.IPv6)
		}
		seen4[node.IPv4], seen6[node.IPv6] = true, true
	}
	if countNodes(t, s) != n {
		t.Fatal("node count mismatch")
	}
}

func TestDeletedNodeAddressIsHeldUntilWrapAndHold(t *testing.T) {
	ctx := context.Background()
	const hold = time.Hour
	// Pool of 8 indexes: 0 is a network address, so 1..7 are usable.
	s, _ := openTest(t, Options{PoolSize: 8, AddressHold: hold})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true, Expires: t0.Add(1000 * time.Hour)})
	enroll := func(at time.Time) (Node, error) {
		e := enrollment(id, secret, "h")
		e.Now = at
		return s.Enroll(ctx, e)
	}
	first, err := enroll(t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteNode(ctx, first.ID, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// The remaining six usable addresses come next, none of them first's.
	for i := range 6 {
		n, err := enroll(t0.Add(3 * time.Minute))
		if err != nil {
			t.Fatalf("enrollment %d: %v", i, err)
		}
		if n.IPv4 == first.IPv4 {
			t.Fatalf("released address %v reused before the pool wrapped", n.IPv4)
		}
	}
	// The pool wrapped; first's address is still held.
	if _, err := enroll(t0.Add(30 * time.Minute)); !errors.Is(err, ErrAddressPoolExhausted) {
		t.Fatalf("enroll while the only free address is held: got %v, want ErrAddressPoolExhausted", err)
	}
	n, err := enroll(t0.Add(2*time.Minute + hold + time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if n.IPv4 != first.IPv4 || n.IPv6 != first.IPv6 {
		t.Fatalf("after the hold, got %v, want the released %v", n.IPv4, first.IPv4)
	}
}

func TestNodeIDIsNeverReused(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true})
	e := enrollment(id, secret, "h")
	n, err := s.Enroll(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteNode(ctx, n.ID, t0); err != nil {
		t.Fatal(err)
	}
	e2 := enrollment(id, secret, "h")
	e2.NodeID = n.ID
	if _, err := s.Enroll(ctx, e2); err == nil {
		t.Fatal("a deleted node's ID was issued again")
	}
	if _, err := s.DeleteNode(ctx, n.ID, t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting twice: got %v, want ErrNotFound", err)
	}
}

func TestWireGuardKeyBelongsToOneNode(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true})
	e := enrollment(id, secret, "h")
	if _, err := s.Enroll(ctx, e); err != nil {
		t.Fatal(err)
	}
	e2 := enrollment(id, secret, "h")
	e2.WireGuardKey = e.WireGuardKey
	if _, err := s.Enroll(ctx, e2); !errors.Is(err, ErrWireGuardKeyInUse) {
		t.Fatalf("got %v, want ErrWireGuardKeyInUse", err)
	}
}

func TestLabel(t *testing.T) {
	long := "a123456789b123456789c123456789d123456789e123456789f123456789g123456789"
	tests := []struct{ in, want string }{
		{"web-1", "web-1"},
		{"Web_Server.example.com", "web-server"},
		{"  CI Runner #7 ", "ci-runner-7"},
		{"--x--", "x"},
		{"", "node"},
		{"...", "node"},
		{"ünïcode", "n-code"},
		{long, long[:63]},
		{"a" + string(make([]byte, 70)), "a"},
	}
	for _, tt := range tests {
		if got := Label(tt.in); got != tt.want {
			t.Errorf("Label(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNodeNamesAreMadeUnique(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true})
	long := "x123456789x123456789x123456789x123456789x123456789x123456789xyz"
	want := []struct{ host, name string }{
		{"web", "web"}, {"web", "web-2"}, {"WEB.local", "web-3"}, {"web-2", "web-2-2"},
		{long, long}, {long, long[:61] + "-2"},
	}
	for _, w := range want {
		n, err := s.Enroll(ctx, enrollment(id, secret, w.host))
		if err != nil {
			t.Fatal(err)
		}
		if n.Name != w.name || n.Hostname != w.host {
			t.Errorf("host %q: got name %q, want %q", w.host, n.Name, w.name)
		}
	}
}

func TestSecretsAreStoredOnlyHashed(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t, Options{})
	keyID, keySecret := addKey(t, s, EnrollmentKey{Reusable: true})
	tokSecret := randSecret()
	if _, err := s.CreateBootstrapToken(ctx, APIToken{ID: randHex(6), Scopes: []string{"admin"}, Created: t0}, HashSecret(tokSecret)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enroll(ctx, enrollment(keyID, keySecret, "h")); err != nil {
		t.Fatal(err)
	}
	// Look in the database and its WAL while the store is open, and again
	// after Close has checkpointed.
	check := func(when string) {
		files, _ := filepath.Glob(path + "*")
		if len(files) == 0 {
			t.Fatal("no database files")
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for name, secret := range map[string]string{"enrollment key": keySecret, "API token": tokSecret} {
				if bytes.Contains(b, []byte(secret)) {
					t.Errorf("%s: %s secret found in plain text in %s", when, name, filepath.Base(f))
				}
			}
			if !bytes.Contains(b, []byte(keyID)) && filepath.Base(f) == "latch.db-wal" {
				t.Logf("%s: key id not in WAL (checkpointed)", when)
			}
		}
	}
	check("open")
	s.Close()
	check("closed")
}

func TestBootstrapTokenIsCreatedOnce(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	ok, err := s.CreateBootstrapToken(ctx, APIToken{ID: "aaaaaaaaaaaa", Scopes: []string{"admin"}, Created: t0}, HashSecret("one"))
	if err != nil || !ok {
		t.Fatalf("first: %v %v", ok, err)
	}
	ok, err = s.CreateBootstrapToken(ctx, APIToken{ID: "bbbbbbbbbbbb", Scopes: []string{"admin"}, Created: t0}, HashSecret("two"))
	if err != nil || ok {
		t.Fatalf("second: created=%v err=%v, want false, nil", ok, err)
	}
	if _, _, err := s.APIToken(ctx, "bbbbbbbbbbbb"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second bootstrap token stored: %v", err)
	}
	tok, hash, err := s.APIToken(ctx, "aaaaaaaaaaaa")
	if err != nil || !bytes.Equal(hash, HashSecret("one")) || tok.Scopes[0] != "admin" {
		t.Fatalf("APIToken: %+v %v", tok, err)
	}
	if m, _ := s.Meta(ctx); !m.BootstrapDone {
		t.Fatal("BootstrapDone false")
	}
}

func TestVersionBumpsOnlyOnNetmapChanges(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true})
	version := func() uint64 {
		snap, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Version
	}
	v0 := version()
	n, err := s.Enroll(ctx, enrollment(id, secret, "h"))
	if err != nil {
		t.Fatal(err)
	}
	v1 := version()
	if v1 <= v0 {
		t.Fatalf("enroll: version %d -> %d", v0, v1)
	}
	changed, err := s.SetEndpoints(ctx, n.ID, n.Endpoints, t0)
	if err != nil || changed || version() != v1 {
		t.Fatalf("same endpoints: changed=%v err=%v version %d->%d", changed, err, v1, version())
	}
	eps := []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::1]:4000")}
	changed, err = s.SetEndpoints(ctx, n.ID, eps, t0)
	if err != nil || !changed || version() <= v1 {
		t.Fatalf("new endpoints: changed=%v err=%v", changed, err)
	}
	got, _ := s.Node(ctx, n.ID)
	if len(got.Endpoints) != 1 || got.Endpoints[0] != eps[0] {
		t.Fatalf("endpoints = %v", got.Endpoints)
	}
	v2 := version()
	if err := s.Touch(ctx, n.ID, t0.Add(time.Hour)); err != nil || version() != v2 {
		t.Fatalf("touch: %v", err)
	}
	if got, _ := s.Node(ctx, n.ID); !got.LastSeen.Equal(t0.Add(time.Hour)) {
		t.Fatalf("last seen = %v", got.LastSeen)
	}
	if _, err := s.DeleteNode(ctx, n.ID, t0); err != nil || version() <= v2 {
		t.Fatalf("delete: %v", err)
	}
	if err := s.Touch(ctx, n.ID, t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("touch deleted: %v", err)
	}
}

func TestNodeRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true, Ephemeral: true, Tags: []wire.Tag{"tag:b", "tag:a"}})
	e := enrollment(id, secret, "Box.example")
	want, err := s.Enroll(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if !want.Ephemeral || len(want.Tags) != 2 || want.Tags[0] != "tag:a" {
		t.Fatalf("enrolled %+v: want ephemeral with sorted key tags", want)
	}
	for _, get := range []func() (Node, error){
		func() (Node, error) { return s.Node(ctx, want.ID) },
		func() (Node, error) { return s.NodeByName(ctx, "box") },
	} {
		got, err := get()
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != want.ID || got.Name != want.Name || got.WireGuardKey != want.WireGuardKey ||
			!got.CertKey.Equal(want.CertKey) || got.IPv4 != want.IPv4 || got.IPv6 != want.IPv6 ||
			!got.Created.Equal(want.Created) || got.KeyID != id || len(got.Endpoints) != 1 {
			t.Errorf("got %+v\nwant %+v", got, want)
		}
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	if err := s.SetCertKey(ctx, want.ID, pub, t0); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Node(ctx, want.ID); !got.CertKey.Equal(pub) {
		t.Fatal("cert key not updated")
	}
	if _, err := s.NodeByName(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown name: %v", err)
	}
}
