package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/latchnet/latch/wire"
)

func testRule(id, name string) wire.TrustRule {
	return wire.TrustRule{ID: id, Created: t0, TrustRuleRequest: wire.TrustRuleRequest{
		Name: name, Issuer: "https://issuer.example", Audience: "latch",
		Claims: map[string]string{"sub": "repo:acme/app:ref:refs/heads/main"},
		Tags:   []wire.Tag{"tag:ci"}, Ephemeral: true, MaxLifetime: 2 * time.Hour,
	}}
}

func federated(rule, token string) Enrollment {
	e := enrollment("", "", "runner")
	e.SecretHash = nil
	e.Federated = &FederatedEnrollment{RuleID: rule, TokenID: token, TokenExpires: e.Now.Add(5 * time.Minute)}
	return e
}

func TestTrustRuleLifecycle(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	a, b := testRule("tr1", "gha-deploy"), testRule("tr2", "gitlab")
	b.Created = t0.Add(time.Second)
	for _, r := range []wire.TrustRule{b, a} {
		if err := s.CreateTrustRule(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	dup := testRule("tr3", "gha-deploy")
	if err := s.CreateTrustRule(ctx, dup); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("duplicate name: err = %v", err)
	}
	got, err := s.TrustRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]wire.TrustRule{a, b}, got); diff != "" {
		t.Fatalf("rules (-want +got):\n%s", diff)
	}
	if _, err := s.DeleteTrustRule(ctx, "gitlab"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteTrustRule(ctx, "gitlab"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: err = %v", err)
	}
}

func TestFederatedEnrollmentTakesTheRuleAndRefusesReplay(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	if err := s.CreateTrustRule(ctx, testRule("tr1", "gha-deploy")); err != nil {
		t.Fatal(err)
	}
	e := federated("tr1", "tok-1")
	n, err := s.Enroll(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if !n.Ephemeral || len(n.Tags) != 1 || n.Tags[0] != "tag:ci" || n.KeyID != "" || n.Owner != "" {
		t.Fatalf("node = %+v", n)
	}
	if want := e.Now.Add(2 * time.Hour).UTC().Truncate(time.Microsecond); !n.KeyExpiry.Equal(want) {
		t.Fatalf("key expiry = %v, want %v", n.KeyExpiry, want)
	}
	stored, err := s.Node(ctx, n.ID)
	if err != nil || stored.KeyExpiry != n.KeyExpiry {
		t.Fatalf("stored node %+v, %v", stored, err)
	}
	rules, _ := s.NodeTrustRules(ctx)
	if rules[n.ID] != "gha-deploy" {
		t.Fatalf("node trust rules = %v", rules)
	}

	// The same token again, with a new node identity: refused, nothing stored.
	before := countNodes(t, s)
	if _, err := s.Enroll(ctx, federated("tr1", "tok-1")); !errors.Is(err, ErrTokenReplayed) {
		t.Fatalf("replay: err = %v, want ErrTokenReplayed", err)
	}
	if countNodes(t, s) != before {
		t.Fatal("a replayed token created a node")
	}
	// A deleted rule enrolls nobody.
	if _, err := s.DeleteTrustRule(ctx, "tr1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enroll(ctx, federated("tr1", "tok-2")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted rule: err = %v", err)
	}
	// A requested tag outside the rule's is refused.
	s.CreateTrustRule(ctx, testRule("tr9", "other"))
	e = federated("tr9", "tok-3")
	e.Tags = []wire.Tag{"tag:prod"}
	if _, err := s.Enroll(ctx, e); !errors.Is(err, ErrTagNotAllowed) {
		t.Fatalf("foreign tag: err = %v", err)
	}
	// The refused attempt did not burn the token.
	if _, err := s.Enroll(ctx, federated("tr9", "tok-3")); err != nil {
		t.Fatalf("token after a refused attempt: %v", err)
	}
}

func TestConcurrentReplaysEnrollOneNode(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	s.CreateTrustRule(ctx, testRule("tr1", "gha-deploy"))
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Enroll(ctx, federated("tr1", "same-token")); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != 1 || countNodes(t, s) != 1 {
		t.Fatalf("%d enrollments succeeded, %d nodes; want 1", ok, countNodes(t, s))
	}
}

func TestUsedTokensArePrunedAfterExpiry(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	s.CreateTrustRule(ctx, testRule("tr1", "gha-deploy"))
	if _, err := s.Enroll(ctx, federated("tr1", "old")); err != nil {
		t.Fatal(err)
	}
	e := federated("tr1", "new")
	e.Now = e.Now.Add(time.Hour)
	if _, err := s.Enroll(ctx, e); err != nil {
		t.Fatal(err)
	}
	var n int
	s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM federated_tokens`).Scan(&n)
	if n != 1 {
		t.Fatalf("%d token records, want 1 (the expired one pruned)", n)
	}
}
