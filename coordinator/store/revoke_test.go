package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
)

func TestRevokedKeysCannotEnrollAgain(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true})
	e := enrollment(id, secret, "victim")
	n, err := s.Enroll(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeNode(ctx, n.ID, t0); err != nil {
		t.Fatal(err)
	}
	if c := countNodes(t, s); c != 0 {
		t.Fatalf("%d nodes after revocation, want 0", c)
	}
	otherCert, _, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name   string
		modify func(*Enrollment)
		want   error
	}{
		{"same WireGuard key", func(e2 *Enrollment) { e2.WireGuardKey = e.WireGuardKey; e2.CertKey = otherCert }, ErrNodeKeyRevoked},
		{"same certificate key", func(e2 *Enrollment) { e2.CertKey = e.CertKey }, ErrNodeKeyRevoked},
		{"fresh keys", func(*Enrollment) {}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e2 := enrollment(id, secret, "victim")
			tt.modify(&e2)
			_, err := s.Enroll(ctx, e2)
			if !errors.Is(err, tt.want) {
				t.Fatalf("enroll: got %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := s.RevokeNode(ctx, n.ID, t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoking twice: got %v, want ErrNotFound", err)
	}
}

func TestDeleteDoesNotRevokeKeys(t *testing.T) {
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
	e2.WireGuardKey = e.WireGuardKey
	if _, err := s.Enroll(ctx, e2); err != nil {
		t.Fatalf("re-enrolling a deleted (not revoked) node's key: %v", err)
	}
}

func TestNoNodeRotatesOntoARevokedKey(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	id, secret := addKey(t, s, EnrollmentKey{Reusable: true})
	victim := enrollment(id, secret, "victim")
	v, err := s.Enroll(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Enroll(ctx, enrollment(id, secret, "other"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeNode(ctx, v.ID, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetWireGuardKey(ctx, other.ID, victim.WireGuardKey, t0); !errors.Is(err, ErrNodeKeyRevoked) {
		t.Fatalf("rotating onto the revoked node's key: got %v, want ErrNodeKeyRevoked", err)
	}
}
