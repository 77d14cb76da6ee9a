package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// TestMigrationFrom0001KeepsData builds a database as the first
// coordinator left it (schema 0001, written with that coordinator's
// statements) and opens it with this one.
func TestMigrationFrom0001KeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "latch.db")
	old, err := sql.Open("sqlite", path+"?_foreign_keys=1&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	if err := migrateTo(ctx, old, 1); err != nil {
		t.Fatal(err)
	}
	us := t0.UnixMicro()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := old.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`INSERT INTO meta (id, trust_domain, ula_prefix, addr_cursor, netmap_version, bootstrap_token_id)
		VALUES (1, 'test.internal', 'fd12:3456:789a::/48', 2, 7, 'aaaaaaaaaaaa')`)
	exec(`INSERT INTO api_tokens (id, secret_hash, scopes, description, created, expires, revoked)
		VALUES ('aaaaaaaaaaaa', ?, '["admin"]', 'bootstrap', ?, NULL, NULL)`, HashSecret("s"), us)
	exec(`INSERT INTO enrollment_keys (id, secret_hash, description, reusable, ephemeral, tags, created, expires, revoked, uses)
		VALUES ('bbbbbbbbbbbb', ?, 'k', 1, 0, '["tag:web"]', ?, ?, NULL, 2)`, HashSecret("k"), us, us+int64(time.Hour/time.Microsecond))
	for i, tags := range []string{`["tag:web"]`, `[]`} {
		exec(`INSERT INTO nodes (id, name, hostname, wg_key, cert_pubkey, addr_index, ipv4, ipv6, tags, ephemeral, created, last_seen, endpoints, enrollment_key_id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, '["198.18.0.1:51820"]', 'bbbbbbbbbbbb')`,
			[]string{"n01", "n02"}[i], []string{"web", "laptop"}[i], "h", newWGKey().String(), []byte(pub), i+1,
			[]string{"100.64.0.1", "100.64.0.2"}[i], []string{"fd12:3456:789a::1", "fd12:3456:789a::2"}[i], tags, us, us)
	}
	old.Close()

	s, err := OpenSQLite(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := s.Init(ctx, "test.internal")
	if err != nil || m.NetmapVersion != 7 || !m.BootstrapDone || m.ULA.String() != "fd12:3456:789a::/48" {
		t.Fatalf("meta after migration %+v, %v", m, err)
	}
	tok, hash, err := s.APIToken(ctx, "aaaaaaaaaaaa")
	if err != nil || tok.User != "bootstrap" || !bytes.Equal(hash, HashSecret("s")) || !slices.Equal(tok.Scopes, []string{"admin"}) {
		t.Fatalf("bootstrap token after migration %+v, %v", tok, err)
	}
	keys, _ := s.EnrollmentKeys(ctx)
	if len(keys) != 1 || keys[0].CreatedByUser != "bootstrap" || keys[0].Uses != 2 || !keys[0].Reusable {
		t.Fatalf("keys after migration %+v", keys)
	}
	web, err := s.Node(ctx, "n01")
	if err != nil || web.Owner != "bootstrap" || web.PolicyOwner() != "" || web.Endpoints[0].String() != "198.18.0.1:51820" {
		t.Fatalf("tagged node after migration %+v, %v", web, err)
	}
	laptop, err := s.Node(ctx, "n02")
	if err != nil || laptop.PolicyOwner() != "bootstrap" || laptop.IPv4.String() != "100.64.0.2" {
		t.Fatalf("untagged node after migration %+v, %v", laptop, err)
	}
	if _, err := s.CurrentPolicy(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("policy after migration: %v, want none", err)
	}
	snap, err := s.Snapshot(ctx)
	if err != nil || len(snap.Nodes) != 2 || snap.Policy.Version != 0 || len(snap.Grants) != 0 || snap.Version != 7 {
		t.Fatalf("snapshot after migration %+v, %v", snap, err)
	}
	// The next address continues after the old cursor.
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true, CreatedByUser: "alice@example.com"})
	n, err := s.Enroll(ctx, enrollment(id, secret, "new"))
	if err != nil || n.IPv4.String() != "100.64.0.3" || n.Owner != "alice@example.com" {
		t.Fatalf("enroll after migration %+v, %v", n, err)
	}
}

func TestPolicyVersionsAndConflicts(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	version := func() uint64 {
		m, _ := s.Meta(ctx)
		return m.NetmapVersion
	}
	v0 := version()
	p1, err := s.SavePolicy(ctx, "// one\n{}", "alice (token a)", 0, t0)
	if err != nil || p1.Version != 1 || version() != v0+1 {
		t.Fatalf("first save %+v, %v", p1, err)
	}
	if _, err := s.SavePolicy(ctx, "{}", "bob", 5, t0); !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("save with a stale if_version: %v", err)
	}
	p2, err := s.SavePolicy(ctx, "// two\n{}", "bob", 1, t0.Add(time.Minute))
	if err != nil || p2.Version != 2 {
		t.Fatalf("second save %+v, %v", p2, err)
	}
	cur, err := s.CurrentPolicy(ctx)
	if err != nil || cur.Version != 2 || cur.Source != "// two\n{}" || cur.Author != "bob" || !cur.Created.Equal(t0.Add(time.Minute)) {
		t.Fatalf("current %+v, %v", cur, err)
	}
	got, err := s.Policy(ctx, 1)
	if err != nil || got.Source != "// one\n{}" || got.Author != "alice (token a)" {
		t.Fatalf("version 1 %+v, %v", got, err)
	}
	if _, err := s.Policy(ctx, 3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("version 3: %v", err)
	}
	list, err := s.Policies(ctx)
	if err != nil || len(list) != 2 || list[0].Version != 2 || list[1].Version != 1 || list[0].Source != "" {
		t.Fatalf("list %+v, %v", list, err)
	}
	if snap, _ := s.Snapshot(ctx); snap.Policy.Version != 2 || snap.Policy.Source != cur.Source {
		t.Fatalf("snapshot policy %+v", snap.Policy)
	}
}

func tcp(port uint16) []PortSpec { return []PortSpec{{Proto: wire.ProtoTCP, First: port, Last: port}} }

func TestAccessRequestLifecycle(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true})
	n, err := s.Enroll(ctx, enrollment(id, secret, "ci"))
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := s.SavePolicy(ctx, "{}", "a", 0, t0)
	version := func() uint64 {
		m, _ := s.Meta(ctx)
		return m.NetmapVersion
	}
	req := AccessRequest{ID: "r1", Src: n.ID, SrcName: n.Name, To: "svc:db", Port: 5432, Duration: 30 * time.Minute,
		Reason: "INC-42", State: wire.AccessPending, Created: t0}
	v := version()
	if err := s.CreateAccessRequest(ctx, req); err != nil || version() != v {
		t.Fatalf("create pending: %v (version %d -> %d)", err, v, version())
	}
	if err := s.CreateAccessRequest(ctx, req); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("duplicate ID: %v", err)
	}
	ghost := req
	ghost.ID, ghost.Src = "r0", "nope"
	if err := s.CreateAccessRequest(ctx, ghost); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown source: %v", err)
	}
	if _, err := s.DecideAccess(ctx, Decision{ID: "r1", From: wire.AccessPending, To: wire.AccessApproved, By: "alice",
		At: t0, Expires: t0.Add(time.Hour), Ports: tcp(5432), PolicyVersion: pol.Version + 1}); !errors.Is(err, ErrPolicyChanged) {
		t.Fatalf("approval against a stale policy: %v", err)
	}
	expires := t0.Add(30 * time.Minute)
	got, err := s.DecideAccess(ctx, Decision{ID: "r1", From: wire.AccessPending, To: wire.AccessApproved, By: "alice",
		Reason: "ok", At: t0, Expires: expires, Ports: tcp(5432), PolicyVersion: pol.Version})
	if err != nil || got.State != wire.AccessApproved || got.Approver != "alice" || !got.Expires.Equal(expires) ||
		!slices.Equal(got.Ports, tcp(5432)) || got.DecisionReason != "ok" || got.Duration != 30*time.Minute || version() != v+1 {
		t.Fatalf("approve %+v, %v", got, err)
	}
	var se *StateError
	if _, err := s.DecideAccess(ctx, Decision{ID: "r1", From: wire.AccessPending, To: wire.AccessDenied, At: t0}); !errors.As(err, &se) || se.State != wire.AccessApproved {
		t.Fatalf("deny an approved request: %v", err)
	}
	if next, ok, err := s.NextGrantExpiry(ctx); err != nil || !ok || !next.Equal(expires) {
		t.Fatalf("next expiry %v %v %v", next, ok, err)
	}
	snap, _ := s.Snapshot(ctx)
	if len(snap.Grants) != 1 || snap.Grants[0].ID != "r1" {
		t.Fatalf("snapshot grants %+v", snap.Grants)
	}
	// Not due yet: nothing expires, the version stays.
	v = version()
	if ex, err := s.ExpireGrants(ctx, expires.Add(-time.Microsecond)); err != nil || len(ex) != 0 || version() != v {
		t.Fatalf("early expiry: %+v %v", ex, err)
	}
	ex, err := s.ExpireGrants(ctx, expires)
	if err != nil || len(ex) != 1 || ex[0].State != wire.AccessExpired || version() != v+1 {
		t.Fatalf("expiry: %+v %v", ex, err)
	}
	if _, ok, _ := s.NextGrantExpiry(ctx); ok {
		t.Fatal("an expired grant still has a next expiry")
	}
	if snap, _ := s.Snapshot(ctx); len(snap.Grants) != 0 {
		t.Fatalf("expired grant in snapshot %+v", snap.Grants)
	}
	if _, err := s.DecideAccess(ctx, Decision{ID: "r1", From: wire.AccessApproved, To: wire.AccessRevoked, At: t0}); !errors.As(err, &se) || se.State != wire.AccessExpired {
		t.Fatalf("revoke an expired grant: %v", err)
	}

	// Auto-approved at creation, then revoked; another denied.
	auto := req
	auto.ID, auto.State, auto.Approver, auto.Decided, auto.Expires, auto.Ports, auto.PolicyVersion =
		"r2", wire.AccessApproved, "policy", t0, t0.Add(time.Hour), tcp(5432), pol.Version
	v = version()
	if err := s.CreateAccessRequest(ctx, auto); err != nil || version() != v+1 {
		t.Fatalf("create approved: %v", err)
	}
	rev, err := s.DecideAccess(ctx, Decision{ID: "r2", From: wire.AccessApproved, To: wire.AccessRevoked, By: "bob", Reason: "done", At: t0.Add(time.Minute)})
	if err != nil || rev.State != wire.AccessRevoked || rev.Approver != "policy" || rev.RevokedBy != "bob" || rev.RevokeReason != "done" || version() != v+2 {
		t.Fatalf("revoke %+v, %v", rev, err)
	}
	denied := req
	denied.ID = "r3"
	s.CreateAccessRequest(ctx, denied)
	v = version()
	d, err := s.DecideAccess(ctx, Decision{ID: "r3", From: wire.AccessPending, To: wire.AccessDenied, By: "carol", At: t0})
	if err != nil || d.State != wire.AccessDenied || d.Approver != "carol" || version() != v {
		t.Fatalf("deny %+v, %v (a denial changes no netmap)", d, err)
	}
	if _, err := s.DecideAccess(ctx, Decision{ID: "zz", From: wire.AccessPending, To: wire.AccessDenied, At: t0}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown request: %v", err)
	}
	all, _ := s.AccessRequests(ctx)
	pending, _ := s.AccessRequests(ctx, wire.AccessPending)
	closed, _ := s.AccessRequests(ctx, wire.AccessDenied, wire.AccessRevoked)
	if len(all) != 3 || len(pending) != 0 || len(closed) != 2 {
		t.Fatalf("lists: all %d pending %d closed %d", len(all), len(pending), len(closed))
	}
}

func TestDeletingANodeEndsItsRequests(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true})
	n, _ := s.Enroll(ctx, enrollment(id, secret, "ci"))
	base := AccessRequest{Src: n.ID, SrcName: n.Name, To: "svc:db", Duration: time.Hour, Reason: "x", Created: t0}
	pending, active := base, base
	pending.ID, pending.State = "p", wire.AccessPending
	active.ID, active.State, active.Expires, active.Ports = "a", wire.AccessApproved, t0.Add(time.Hour), tcp(5432)
	for _, r := range []AccessRequest{pending, active} {
		if err := s.CreateAccessRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteNode(ctx, n.ID, t0); err != nil {
		t.Fatal(err)
	}
	p, _ := s.AccessRequest(ctx, "p")
	a, _ := s.AccessRequest(ctx, "a")
	if p.State != wire.AccessDenied || a.State != wire.AccessRevoked || a.RevokedBy != "system" {
		t.Fatalf("after deleting the source: %+v %+v", p, a)
	}
	if _, ok, _ := s.NextGrantExpiry(ctx); ok {
		t.Fatal("a deleted node's grant is still active")
	}
}

func TestTokensHaveUsersAndCanBeRevoked(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	for i, u := range []string{"alice@example.com", "ci-bot"} {
		if err := s.CreateAPIToken(ctx, APIToken{ID: []string{"aaaaaaaaaaaa", "bbbbbbbbbbbb"}[i], User: u,
			Scopes: []string{"nodes:read"}, Created: t0.Add(time.Duration(i) * time.Second), Expires: t0.Add(time.Hour)}, HashSecret(u)); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.APITokens(ctx)
	if err != nil || len(list) != 2 || list[0].User != "alice@example.com" || list[1].User != "ci-bot" || !list[0].Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("list %+v, %v", list, err)
	}
	rev, err := s.RevokeAPIToken(ctx, "bbbbbbbbbbbb", t0)
	if err != nil || !rev.Revoked.Equal(t0) {
		t.Fatalf("revoke %+v, %v", rev, err)
	}
	if again, _ := s.RevokeAPIToken(ctx, "bbbbbbbbbbbb", t0.Add(time.Hour)); !again.Revoked.Equal(t0) {
		t.Fatal("revoking twice moved the revocation time")
	}
	if _, err := s.RevokeAPIToken(ctx, "cccccccccccc", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if tok, _, _ := s.APIToken(ctx, "bbbbbbbbbbbb"); tok.Revoked.IsZero() || tok.User != "ci-bot" {
		t.Fatalf("revoked token reads %+v", tok)
	}
}

func TestNodeOwnerIsTheKeyCreator(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true, Tags: []wire.Tag{"tag:web"}, CreatedByUser: "alice@example.com"})
	tn, _ := s.Enroll(ctx, enrollment(id, secret, "web"))
	// A key's tags all apply when none are requested: an untagged node
	// needs an untagged key.
	id2, secret2 := addKey(t, s, EnrollmentKey{Reusable: true, CreatedByUser: "alice@example.com"})
	un, _ := s.Enroll(ctx, enrollment(id2, secret2, "laptop"))
	if tn.Owner != "alice@example.com" || tn.PolicyOwner() != "" {
		t.Fatalf("tagged node owner %q policy owner %q", tn.Owner, tn.PolicyOwner())
	}
	got, _ := s.Node(ctx, un.ID)
	if got.Owner != "alice@example.com" || got.PolicyOwner() != "alice@example.com" {
		t.Fatalf("untagged node %+v", got)
	}
	keys, _ := s.EnrollmentKeys(ctx)
	if keys[0].CreatedByUser != "alice@example.com" {
		t.Fatalf("key %+v", keys[0])
	}
}
