package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
)

func TestFirstConsoleAccountIsCreatedOnlyOnce(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	actx := audit.With(ctx, audit.Entry{Actor: "token:x", Action: "console.setup", Target: "console:user:olive"})
	ok, err := s.CreateFirstConsoleAccount(actx, ConsoleAccount{Username: "olive", Hash: "h1", Role: RoleOwner, Created: now})
	if err != nil || !ok {
		t.Fatalf("first account: %v, %v", ok, err)
	}
	actx = audit.With(ctx, audit.Entry{Actor: "token:x", Action: "console.setup", Target: "console:user:mallory"})
	ok, err = s.CreateFirstConsoleAccount(actx, ConsoleAccount{Username: "mallory", Hash: "h2", Role: RoleOwner, Created: now})
	if err != nil || ok {
		t.Fatalf("second first account: %v, %v; want false, nil", ok, err)
	}
	recs, _ := s.AuditRecords(ctx, AuditFilter{Action: "console.setup"})
	if len(recs) != 1 {
		t.Errorf("%d setup records, want 1 (the refused one audits nothing)", len(recs))
	}
	if err := s.CreateConsoleAccount(ctx, ConsoleAccount{Username: "olive", Hash: "h", Role: RoleAdmin, Created: now}); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("duplicate account: %v, want ErrAlreadyExists", err)
	}
	a, err := s.ConsoleAccount(ctx, "olive")
	if err != nil || a.Hash != "h1" || a.Role != RoleOwner || !a.Created.Equal(now) || a.Disabled {
		t.Errorf("account %+v, %v", a, err)
	}
	if _, err := s.ConsoleAccount(ctx, "mallory"); !errors.Is(err, ErrNotFound) {
		t.Errorf("mallory: %v, want ErrNotFound", err)
	}
}

func TestConsoleSessionsLiveUntilDeletedPrunedOrDisabled(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	if err := s.CreateConsoleAccount(ctx, ConsoleAccount{Username: "audrey", Hash: "h", Role: RoleAuditor, Created: now}); err != nil {
		t.Fatal(err)
	}
	mk := func(b byte, expires, seen time.Time) []byte {
		id := bytes.Repeat([]byte{b}, 32)
		if err := s.CreateConsoleSession(ctx, ConsoleSession{IDHash: id, Username: "audrey", Created: now, Expires: expires, LastSeen: seen}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	live := mk(1, now.Add(time.Hour), now)
	expired := mk(2, now.Add(-time.Second), now)
	idle := mk(3, now.Add(time.Hour), now.Add(-2*time.Hour))
	got, err := s.ConsoleSession(ctx, live)
	if err != nil || got.Username != "audrey" || !got.Expires.Equal(now.Add(time.Hour)) || !bytes.Equal(got.IDHash, live) {
		t.Fatalf("session %+v, %v", got, err)
	}
	if err := s.TouchConsoleSession(ctx, live, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ConsoleSession(ctx, live); !got.LastSeen.Equal(now.Add(time.Minute)) {
		t.Errorf("last seen %v after touch", got.LastSeen)
	}
	n, err := s.PruneConsoleSessions(ctx, now, now.Add(-time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("pruned %d (%v), want 2", n, err)
	}
	for _, id := range [][]byte{expired, idle} {
		if _, err := s.ConsoleSession(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("pruned session still there: %v", err)
		}
	}
	if err := s.SetConsoleAccountDisabled(ctx, "audrey", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsoleSession(ctx, live); !errors.Is(err, ErrNotFound) {
		t.Errorf("disabling the account kept its session: %v", err)
	}
	if err := s.DeleteConsoleSession(ctx, live); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting a gone session: %v, want ErrNotFound", err)
	}
}

func TestConsolePasswordChangeKeepsOnlyTheChangingSession(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	now := time.Now().UTC()
	if err := s.CreateConsoleAccount(ctx, ConsoleAccount{Username: "olive", Hash: "h1", Role: RoleOwner, Created: now}); err != nil {
		t.Fatal(err)
	}
	keep, other := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	for _, id := range [][]byte{keep, other} {
		if err := s.CreateConsoleSession(ctx, ConsoleSession{IDHash: id, Username: "olive", Created: now, Expires: now.Add(time.Hour), LastSeen: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetConsolePassword(ctx, "olive", "h2", keep); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.ConsoleAccount(ctx, "olive"); a.Hash != "h2" {
		t.Errorf("hash %q after the change", a.Hash)
	}
	if _, err := s.ConsoleSession(ctx, keep); err != nil {
		t.Errorf("the changing session ended: %v", err)
	}
	if _, err := s.ConsoleSession(ctx, other); !errors.Is(err, ErrNotFound) {
		t.Errorf("the other session survived: %v", err)
	}
	if err := s.SetConsoleRole(ctx, "olive", RoleAuditor); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.ConsoleAccount(ctx, "olive"); a.Role != RoleAuditor {
		t.Errorf("role %q after the change", a.Role)
	}
	for name, err := range map[string]error{
		"password": s.SetConsolePassword(ctx, "nobody", "h", nil),
		"role":     s.SetConsoleRole(ctx, "nobody", RoleAdmin),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of a missing account: %v, want ErrNotFound", name, err)
		}
	}
}
