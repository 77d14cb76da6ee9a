package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

func TestSetWireGuardKeyKeepsKeysUniqueAndBumpsTheVersion(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true})
	a, err := s.Enroll(ctx, enrollment(id, secret, "a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Enroll(ctx, enrollment(id, secret, "b"))
	if err != nil {
		t.Fatal(err)
	}
	version := func() uint64 {
		t.Helper()
		snap, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Version
	}
	at := time.Now()
	fresh := newWGKey()
	tests := []struct {
		name        string
		node        wire.NodeID
		key         wire.NodePublic
		wantErr     error
		wantChanged bool
		wantKey     wire.NodePublic // a's key afterwards
	}{
		{name: "new key", node: a.ID, key: fresh, wantChanged: true, wantKey: fresh},
		{name: "same key again", node: a.ID, key: fresh, wantKey: fresh},
		{name: "another node's key", node: a.ID, key: b.WireGuardKey, wantErr: ErrWireGuardKeyInUse, wantKey: fresh},
		{name: "unknown node", node: "nosuch", key: newWGKey(), wantErr: ErrNotFound, wantKey: fresh},
		{name: "zero key", node: a.ID, key: wire.NodePublic{}, wantErr: errAny, wantKey: fresh},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := version()
			changed, err := s.SetWireGuardKey(ctx, tt.node, tt.key, at)
			switch {
			case tt.wantErr == errAny && err == nil, tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			if after := version(); (after > before) != tt.wantChanged {
				t.Errorf("version %d -> %d; changed %v", before, after, tt.wantChanged)
			}
			n, err := s.Node(ctx, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			if n.WireGuardKey != tt.wantKey {
				t.Errorf("a's key %v, want %v", n.WireGuardKey, tt.wantKey)
			}
		})
	}
}

// errAny stands for "some error" in tables.
var errAny = errors.New("any error")
