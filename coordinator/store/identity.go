package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/wire"
)

// DefaultNodeKeyExpiry is the key lifetime of a node whose enrollment key
// and coordinator set none: 180 days.
const DefaultNodeKeyExpiry = 180 * 24 * time.Hour

// Identity errors callers branch on.
var (
	// ErrKeyUsedUp reports a reusable enrollment key that reached its
	// MaxUses.
	ErrKeyUsedUp = errors.New("enrollment key used up (it reached its max uses)")
	// ErrNodeExpired reports a node whose key expiry has passed.
	ErrNodeExpired = errors.New("node key expired")
	// ErrNeverExpiresUntagged reports an attempt to make an untagged node
	// never expire (or to untag a node that never expires).
	ErrNeverExpiresUntagged = errors.New("only tagged nodes may have a key that never expires")
)

// Audit actions of identity changes.
const (
	AuditNodeExpiry       = "node.expiry"       // an admin set the key expiry
	AuditNodeExpire       = "node.expire"       // the key expiry passed (actor system)
	AuditNodeQuarantine   = "node.quarantine"   // summary: reason
	AuditNodeUnquarantine = "node.unquarantine" //
	AuditNodePosture      = "node.posture"      // the node reported a changed posture
	AuditNodeTags         = "node.tags"         // an admin replaced the tags
)

// identityColumns are the nodes columns of identity state, scanned by
// identityScan (in this order) at the end of nodeColumns.
const identityColumns = `key_expiry, key_expired, quarantined, quarantine_reason, posture, cert_expires`

// identityScan receives identityColumns.
type identityScan struct {
	keyExpiry, certExpires sql.NullInt64
	expired, quarantined   bool
	reason                 string
	posture                sql.NullString
}

func (s *identityScan) dest() []any {
	return []any{&s.keyExpiry, &s.expired, &s.quarantined, &s.reason, &s.posture, &s.certExpires}
}

func (s *identityScan) apply(n *Node) error {
	n.KeyExpiry, n.CertExpires = fromDB(s.keyExpiry), fromDB(s.certExpires)
	n.Expired, n.Quarantined, n.QuarantineReason = s.expired, s.quarantined, s.reason
	if s.posture.Valid {
		var p wire.Posture
		if err := json.Unmarshal([]byte(s.posture.String), &p); err != nil {
			return fmt.Errorf("posture: %w", err)
		}
		n.Posture = &p
	}
	return nil
}

// nodeKeyExpiry returns the key expiry of a node enrolled by e with key k.
func nodeKeyExpiry(k EnrollmentKey, e Enrollment) time.Time {
	switch {
	case k.NoNodeExpiry:
		return time.Time{}
	case k.NodeExpiry > 0:
		return micro(e.Now.Add(k.NodeExpiry))
	case e.DefaultNodeExpiry > 0:
		return micro(e.Now.Add(e.DefaultNodeExpiry))
	}
	return micro(e.Now.Add(DefaultNodeKeyExpiry))
}

func clonePosture(p *wire.Posture) *wire.Posture {
	if p == nil {
		return nil
	}
	c := *p
	if p.Firewall != nil {
		v := *p.Firewall
		c.Firewall = &v
	}
	if p.DiskEncryption != nil {
		v := *p.DiskEncryption
		c.DiskEncryption = &v
	}
	return &c
}

// marshalPosture returns p's stored form: JSON text, or NULL for nil.
func marshalPosture(p *wire.Posture) (any, error) {
	if p == nil {
		return nil, nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// durationToDB stores a duration as microseconds; zero is NULL.
func durationToDB(d time.Duration) any {
	if d == 0 {
		return nil
	}
	return d.Microseconds()
}

func durationFromDB(v sql.NullInt64) time.Duration {
	if !v.Valid {
		return 0
	}
	return time.Duration(v.Int64) * time.Microsecond
}

// nodeTx reads node id within tx, or ErrNotFound.
func nodeTx(ctx context.Context, tx *sql.Tx, id wire.NodeID) (Node, error) {
	n, err := scanNode(tx.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, ErrNotFound
	}
	return n, err
}

// SetNodeExpiry implements Store.
func (s *SQLite) SetNodeExpiry(ctx context.Context, id wire.NodeID, expiry, at time.Time) (Node, error) {
	var n Node
	err := s.writeTx(ctx, func(tx *sql.Tx) (err error) {
		if n, err = nodeTx(ctx, tx, id); err != nil {
			return err
		}
		if expiry.IsZero() && len(n.Tags) == 0 {
			return ErrNeverExpiresUntagged
		}
		expiry = micro(expiry)
		if expiry.IsZero() {
			expiry = time.Time{}
		}
		expired := !expiry.IsZero() && !expiry.After(at)
		if n.KeyExpiry.Equal(expiry) && n.Expired == expired {
			audit.Drop(ctx)
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET key_expiry = ?, key_expired = ? WHERE id = ?`,
			toDB(expiry), expired, id); err != nil {
			return err
		}
		n.KeyExpiry, n.Expired = expiry, expired
		return bumpVersion(ctx, tx)
	})
	if err != nil {
		return Node{}, fmt.Errorf("setting key expiry of node %s: %w", id, err)
	}
	return n, nil
}

// ExpireNodes implements Store.
func (s *SQLite) ExpireNodes(ctx context.Context, now time.Time) ([]Node, error) {
	var expired []Node
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		expired, err = dueNodesTx(ctx, tx, now)
		if err != nil || len(expired) == 0 {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET key_expired = 1
			WHERE key_expired = 0 AND key_expiry IS NOT NULL AND key_expiry <= ?`, now.UnixMicro()); err != nil {
			return err
		}
		for i := range expired {
			expired[i].Expired = true
			e := audit.Entry{Time: now, Actor: audit.ActorSystem, Action: AuditNodeExpire, Target: audit.NodeActor(string(expired[i].ID)),
				Summary: map[string]any{"name": expired[i].Name, "key_expiry": expired[i].KeyExpiry}}
			if err := appendAuditTx(ctx, tx, &e); err != nil {
				return err
			}
		}
		return bumpVersion(ctx, tx)
	})
	if err != nil {
		return nil, fmt.Errorf("expiring nodes: %w", err)
	}
	return expired, nil
}

// dueNodesTx reads the nodes not yet marked expired whose key expiry is
// not after now, earliest first.
func dueNodesTx(ctx context.Context, tx *sql.Tx, now time.Time) ([]Node, error) {
	rows, err := tx.QueryContext(ctx, `SELECT `+nodeColumns+` FROM nodes
		WHERE key_expired = 0 AND key_expiry IS NOT NULL AND key_expiry <= ? ORDER BY key_expiry, id`, now.UnixMicro())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ns []Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, err
		}
		ns = append(ns, n)
	}
	return ns, rows.Err()
}

// NextNodeExpiry implements Store.
func (s *SQLite) NextNodeExpiry(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT MIN(key_expiry) FROM nodes WHERE key_expired = 0 AND key_expiry IS NOT NULL`).Scan(&next); err != nil {
		return time.Time{}, false, fmt.Errorf("reading next node expiry: %w", err)
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return fromDB(next), true, nil
}

// SetQuarantine implements Store.
func (s *SQLite) SetQuarantine(ctx context.Context, id wire.NodeID, on bool, reason string, at time.Time) (bool, error) {
	if !on {
		reason = ""
	}
	changed := false
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		n, err := nodeTx(ctx, tx, id)
		if err != nil {
			return err
		}
		if n.Quarantined == on && n.QuarantineReason == reason {
			audit.Drop(ctx)
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET quarantined = ?, quarantine_reason = ? WHERE id = ?`, on, reason, id); err != nil {
			return err
		}
		if n.Quarantined == on {
			return nil // a new reason only: no netmap shows it
		}
		changed = true
		return bumpVersion(ctx, tx)
	})
	if err != nil {
		return false, fmt.Errorf("setting quarantine of node %s: %w", id, err)
	}
	return changed, nil
}

// SetPosture implements Store.
func (s *SQLite) SetPosture(ctx context.Context, id wire.NodeID, p *wire.Posture, at time.Time) (bool, error) {
	changed := false
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var old sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT posture FROM nodes WHERE id = ?`, id).Scan(&old)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		js, err := marshalPosture(p)
		if err != nil {
			return err
		}
		if samePosture(old, js) {
			audit.Drop(ctx)
			_, err := tx.ExecContext(ctx, `UPDATE nodes SET last_seen = ? WHERE id = ?`, toDB(at), id)
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET posture = ?, last_seen = ? WHERE id = ?`, js, toDB(at), id); err != nil {
			return err
		}
		changed = true
		return bumpVersion(ctx, tx)
	})
	if err != nil {
		return false, fmt.Errorf("recording posture of node %s: %w", id, err)
	}
	return changed, nil
}

// samePosture compares a stored posture with a new stored form. Both
// come from json.Marshal of wire.Posture, so equal content is equal text.
func samePosture(old sql.NullString, js any) bool {
	if js == nil {
		return !old.Valid
	}
	return old.Valid && bytes.Equal([]byte(old.String), []byte(js.(string)))
}

// SetTags implements Store.
func (s *SQLite) SetTags(ctx context.Context, id wire.NodeID, tags []wire.Tag, at time.Time) (bool, error) {
	tags = slices.Clone(tags)
	slices.Sort(tags)
	tags = slices.Compact(tags)
	changed := false
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		n, err := nodeTx(ctx, tx, id)
		if err != nil {
			return err
		}
		if slices.Equal(n.Tags, tags) {
			audit.Drop(ctx)
			return nil
		}
		if len(tags) == 0 && n.KeyExpiry.IsZero() {
			return ErrNeverExpiresUntagged
		}
		js, err := json.Marshal(nonNilTags(tags))
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET tags = ? WHERE id = ?`, string(js), id); err != nil {
			return err
		}
		changed = true
		return bumpVersion(ctx, tx)
	})
	if err != nil {
		return false, fmt.Errorf("setting tags of node %s: %w", id, err)
	}
	return changed, nil
}

// SetCert implements Store.
func (s *SQLite) SetCert(ctx context.Context, id wire.NodeID, pub ed25519.PublicKey, expires, at time.Time) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("recording certificate of node %s: bad key", id)
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		n, err := nodeTx(ctx, tx, id)
		if err != nil {
			return err
		}
		// Checked in the transaction: an expiry set concurrently is seen.
		if n.Expired || !n.KeyExpiry.IsZero() && !n.KeyExpiry.After(at) {
			return ErrNodeExpired
		}
		_, err = tx.ExecContext(ctx, `UPDATE nodes SET cert_pubkey = ?, cert_expires = ?, last_seen = ? WHERE id = ?`,
			[]byte(pub), toDB(expires), toDB(at), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("recording certificate of node %s: %w", id, err)
	}
	return nil
}
