package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/latchnet/latch/wire"
)

// NewNodeID returns a fresh random node ID: "n" and 16 hex characters.
// Enroll refuses an ID that was ever issued, so IDs are never reused.
func NewNodeID() wire.NodeID {
	var b [8]byte
	rand.Read(b[:])
	return wire.NodeID("n" + hex.EncodeToString(b[:]))
}

// dummyHash is compared against when a key does not exist, so an unknown
// key costs the same as a wrong secret.
var dummyHash = make([]byte, 32)

// Enroll implements Store.
func (s *SQLite) Enroll(ctx context.Context, e Enrollment) (Node, error) {
	switch {
	case e.NodeID == "":
		return Node{}, errors.New("enrolling node: empty node ID")
	case e.WireGuardKey.IsZero():
		return Node{}, errors.New("enrolling node: zero WireGuard key")
	case len(e.CertKey) != ed25519.PublicKeySize:
		return Node{}, errors.New("enrolling node: bad certificate key")
	case e.Now.IsZero():
		return Node{}, errors.New("enrolling node: zero time")
	}
	var n Node
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		k, err := s.enrollmentKeyTx(ctx, tx, e) // the key, or a trust rule (federation.go)
		if err != nil {
			return err
		}
		tags, err := resolveTags(k.Tags, e.Tags)
		if err != nil {
			return err
		}
		if err := checkNotRevokedTx(ctx, tx, e.WireGuardKey, e.CertKey); err != nil {
			return err
		}
		var taken int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM nodes WHERE wg_key = ?`, e.WireGuardKey.String()).Scan(&taken); err != nil {
			return err
		}
		if taken > 0 {
			return ErrWireGuardKeyInUse
		}
		if err := tx.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM nodes WHERE id = ?) + (SELECT COUNT(*) FROM retired_node_ids WHERE id = ?)`,
			e.NodeID, e.NodeID).Scan(&taken); err != nil {
			return err
		}
		if taken > 0 {
			return fmt.Errorf("node ID %s was issued before", e.NodeID)
		}
		// The guard in WHERE repeats the one-off check: even if the checks
		// above were wrong, a one-off key cannot be consumed twice.
		// So does the max_uses guard: concurrent enrollments never take
		// a key past its bound.
		res, err := tx.ExecContext(ctx, `UPDATE enrollment_keys SET uses = uses + 1
			WHERE id = ? AND revoked IS NULL AND (reusable = ? OR uses = 0) AND (max_uses = 0 OR uses < max_uses)`, k.ID, true)
		if err != nil {
			return err
		}
		if c, err := res.RowsAffected(); err != nil || c != 1 && e.Federated == nil {
			return ErrKeyUsed
		}
		idx, v4, v6, err := s.allocateAddress(ctx, tx, e.Now)
		if err != nil {
			return err
		}
		name, err := uniqueName(ctx, tx, Label(e.Hostname))
		if err != nil {
			return err
		}
		n = Node{
			ID:           e.NodeID,
			Name:         name,
			Hostname:     e.Hostname,
			WireGuardKey: e.WireGuardKey,
			CertKey:      slices.Clone(e.CertKey),
			IPv4:         v4,
			IPv6:         v6,
			Tags:         tags,
			Ephemeral:    e.Ephemeral || k.Ephemeral,
			Created:      micro(e.Now),
			LastSeen:     micro(e.Now),
			Endpoints:    slices.Clone(e.Endpoints),
			KeyID:        k.ID,
			Owner:        k.CreatedByUser,
			KeyExpiry:    nodeKeyExpiry(k, e),
			Posture:      clonePosture(e.Posture),
			CertExpires:  micro(e.CertExpires),
		}
		if e.CertExpires.IsZero() {
			n.CertExpires = time.Time{}
		}
		postureJSON, err := marshalPosture(n.Posture)
		if err != nil {
			return err
		}
		tagsJSON, err := json.Marshal(nonNilTags(n.Tags))
		if err != nil {
			return err
		}
		epsJSON, err := marshalEndpoints(n.Endpoints)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO nodes
			(id, name, hostname, wg_key, cert_pubkey, addr_index, ipv4, ipv6, tags, ephemeral, created, last_seen, endpoints, enrollment_key_id, owner,
			 key_expiry, posture, cert_expires)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			n.ID, n.Name, n.Hostname, n.WireGuardKey.String(), []byte(n.CertKey), idx, n.IPv4.String(), n.IPv6.String(),
			string(tagsJSON), n.Ephemeral, toDB(n.Created), toDB(n.LastSeen), epsJSON, nullIfEmpty(n.KeyID), n.Owner,
			toDB(n.KeyExpiry), postureJSON, toDB(n.CertExpires)); err != nil {
			return err
		}
		if err := enrolledTx(ctx, tx, n, e); err != nil {
			return err
		}
		return bumpVersion(ctx, tx)
	})
	if err != nil {
		return Node{}, fmt.Errorf("enrolling node: %w", err)
	}
	return n, nil
}

// checkKeyTx validates the enrollment key within the write
// transaction. The secret is checked first, in constant time, and before
// anything about the key's state is revealed.
func (s *SQLite) checkKeyTx(ctx context.Context, tx *sql.Tx, e Enrollment) (EnrollmentKey, error) {
	var hash []byte
	row := tx.QueryRowContext(ctx, `SELECT secret_hash, `+keyColumns+` FROM enrollment_keys WHERE id = ?`, e.KeyID)
	k, err := scanKey(scanPrefix{row, &hash})
	if errors.Is(err, sql.ErrNoRows) {
		subtle.ConstantTimeCompare(dummyHash, e.SecretHash)
		return EnrollmentKey{}, ErrInvalidKey
	}
	if err != nil {
		return EnrollmentKey{}, err
	}
	if len(e.SecretHash) != len(hash) || subtle.ConstantTimeCompare(hash, e.SecretHash) != 1 {
		return EnrollmentKey{}, ErrInvalidKey
	}
	switch {
	case !k.Revoked.IsZero():
		return EnrollmentKey{}, ErrKeyRevoked
	case !e.Now.Before(k.Expires):
		return EnrollmentKey{}, ErrKeyExpired
	case !k.Reusable && k.Uses > 0:
		return EnrollmentKey{}, ErrKeyUsed
	case k.MaxUses > 0 && k.Uses >= k.MaxUses:
		return EnrollmentKey{}, ErrKeyUsedUp
	}
	return k, nil
}

// scanPrefix scans one extra leading column into first.
type scanPrefix struct {
	row   *sql.Row
	first any
}

func (p scanPrefix) Scan(dest ...any) error {
	return p.row.Scan(append([]any{p.first}, dest...)...)
}

// resolveTags returns the tags a node gets: the requested ones, each of
// which the key must carry, or all of the key's when none are requested.
// The result is sorted and without duplicates.
func resolveTags(keyTags, requested []wire.Tag) ([]wire.Tag, error) {
	var out []wire.Tag
	if len(requested) == 0 {
		out = slices.Clone(keyTags)
	} else {
		for _, t := range requested {
			if !slices.Contains(keyTags, t) {
				return nil, &TagNotAllowedError{Tag: t}
			}
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
