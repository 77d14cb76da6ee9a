package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/wire"
)

// SetWireGuardKey records key as node id's WireGuard key and marks the
// node seen at time at. A key bound to another node is refused with
// ErrWireGuardKeyInUse, a key of a revoked node with ErrNodeKeyRevoked.
// Setting the key the node already has changes nothing and reports false;
// otherwise the netmap version increases, so every peer gets a delta with
// the new key.
func (s *SQLite) SetWireGuardKey(ctx context.Context, id wire.NodeID, key wire.NodePublic, at time.Time) (bool, error) {
	if key.IsZero() {
		return false, fmt.Errorf("setting WireGuard key of node %s: zero key", id)
	}
	changed := false
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var old string
		err := tx.QueryRowContext(ctx, `SELECT wg_key FROM nodes WHERE id = ?`, id).Scan(&old)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if old == key.String() {
			audit.Drop(ctx) // a repeated request: nothing changed
			_, err := tx.ExecContext(ctx, `UPDATE nodes SET last_seen = ? WHERE id = ?`, toDB(at), id)
			return err
		}
		var taken int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM nodes WHERE wg_key = ? AND id <> ?`, key.String(), id).Scan(&taken); err != nil {
			return err
		}
		if taken > 0 {
			return ErrWireGuardKeyInUse
		}
		// A revoked node's key stays revoked: no node may rotate onto it.
		if err := checkNotRevokedTx(ctx, tx, key, nil); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET wg_key = ?, last_seen = ? WHERE id = ?`, key.String(), toDB(at), id); err != nil {
			return err
		}
		changed = true
		return bumpVersion(ctx, tx)
	})
	if err != nil {
		return false, fmt.Errorf("setting WireGuard key of node %s: %w", id, err)
	}
	return changed, nil
}
