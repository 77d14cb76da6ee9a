package store

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/latchnet/latch/wire"
)

// Kinds of revoked keys (revoked_keys.kind).
const (
	revokedWireGuard = "wireguard"
	revokedCert      = "cert"
)

// RevokeNode implements Store.
func (s *SQLite) RevokeNode(ctx context.Context, id wire.NodeID, at time.Time) (Node, error) {
	var n Node
	err := s.writeTx(ctx, func(tx *sql.Tx) (err error) {
		if n, err = deleteNodeTx(ctx, tx, id, at); err != nil {
			return err
		}
		if err := s.holdReleasedTx(ctx, tx, n); err != nil {
			return err
		}
		for _, k := range [][2]string{
			{revokedWireGuard, n.WireGuardKey.String()},
			{revokedCert, hex.EncodeToString(n.CertKey)},
		} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO revoked_keys (kind, key, node_id, revoked) VALUES (?, ?, ?, ?)
				ON CONFLICT (kind, key) DO NOTHING`, k[0], k[1], string(id), toDB(at)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Node{}, fmt.Errorf("revoking node %s: %w", id, err)
	}
	return n, nil
}

// checkNotRevokedTx fails with ErrNodeKeyRevoked if wg or cert belonged to
// a revoked node.
func checkNotRevokedTx(ctx context.Context, tx *sql.Tx, wg wire.NodePublic, cert ed25519.PublicKey) error {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM revoked_keys WHERE (kind = ? AND key = ?) OR (kind = ? AND key = ?)`,
		revokedWireGuard, wg.String(), revokedCert, hex.EncodeToString(cert)).Scan(&n)
	if err != nil {
		return err
	}
	if n > 0 {
		return ErrNodeKeyRevoked
	}
	return nil
}
