package store

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/latchnet/latch/wire"
)

const nodeColumns = `id, name, hostname, wg_key, cert_pubkey, ipv4, ipv6, tags, ephemeral, created, last_seen, endpoints, enrollment_key_id, owner, ` + identityColumns + `, trust_rule`

func scanNode(row interface{ Scan(...any) error }) (Node, error) {
	var (
		n                 Node
		wgKey, v4, v6     string
		tags, eps         string
		certKey           []byte
		created, lastSeen sql.NullInt64
		keyID             sql.NullString
		ident             identityScan
	)
	if err := row.Scan(append([]any{&n.ID, &n.Name, &n.Hostname, &wgKey, &certKey, &v4, &v6, &tags, &n.Ephemeral,
		&created, &lastSeen, &eps, &keyID, &n.Owner}, append(ident.dest(), &n.TrustRule)...)...); err != nil {
		return Node{}, err
	}
	if err := ident.apply(&n); err != nil {
		return Node{}, fmt.Errorf("node %s: %w", n.ID, err)
	}
	var err error
	if n.WireGuardKey, err = wire.ParseNodePublic(wgKey); err != nil {
		return Node{}, fmt.Errorf("node %s: %w", n.ID, err)
	}
	if n.IPv4, err = netip.ParseAddr(v4); err != nil {
		return Node{}, fmt.Errorf("node %s: %w", n.ID, err)
	}
	if n.IPv6, err = netip.ParseAddr(v6); err != nil {
		return Node{}, fmt.Errorf("node %s: %w", n.ID, err)
	}
	if err := json.Unmarshal([]byte(tags), &n.Tags); err != nil {
		return Node{}, fmt.Errorf("node %s tags: %w", n.ID, err)
	}
	if len(n.Tags) == 0 {
		n.Tags = nil
	}
	if err := json.Unmarshal([]byte(eps), &n.Endpoints); err != nil {
		return Node{}, fmt.Errorf("node %s endpoints: %w", n.ID, err)
	}
	if len(n.Endpoints) == 0 {
		n.Endpoints = nil
	}
	n.CertKey = ed25519.PublicKey(certKey)
	n.Created, n.LastSeen = fromDB(created), fromDB(lastSeen)
	n.KeyID = keyID.String
	return n, nil
}

func marshalEndpoints(eps []netip.AddrPort) (string, error) {
	if eps == nil {
		eps = []netip.AddrPort{}
	}
	b, err := json.Marshal(eps)
	return string(b), err
}

// micro is t as the store keeps it: UTC, microsecond resolution.
func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// Node implements Store.
func (s *SQLite) Node(ctx context.Context, id wire.NodeID) (Node, error) {
	n, err := scanNode(s.r.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return Node{}, fmt.Errorf("reading node %s: %w", id, err)
	}
	return n, nil
}

// NodeByName implements Store.
func (s *SQLite) NodeByName(ctx context.Context, name string) (Node, error) {
	n, err := scanNode(s.r.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return Node{}, fmt.Errorf("reading node %q: %w", name, err)
	}
	return n, nil
}

// Nodes implements Store.
func (s *SQLite) Nodes(ctx context.Context) ([]Node, error) {
	ns, err := listNodes(ctx, s.r, `ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	return ns, nil
}

func listNodes(ctx context.Context, q querier, order string) ([]Node, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+nodeColumns+` FROM nodes `+order)
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

// Snapshot implements Store. It reads in one transaction, so its version
// identifies its content.
func (s *SQLite) Snapshot(ctx context.Context) (Snapshot, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Snapshot{}, fmt.Errorf("reading snapshot: %w", err)
	}
	defer tx.Rollback()
	m, err := readMeta(ctx, tx)
	if err != nil {
		return Snapshot{}, fmt.Errorf("reading snapshot: %w", err)
	}
	ns, err := listNodes(ctx, tx, `ORDER BY id`)
	if err != nil {
		return Snapshot{}, fmt.Errorf("reading snapshot: %w", err)
	}
	p, err := currentPolicy(ctx, tx)
	if err != nil {
		return Snapshot{}, fmt.Errorf("reading snapshot: %w", err)
	}
	gs, err := activeGrants(ctx, tx)
	if err != nil {
		return Snapshot{}, fmt.Errorf("reading snapshot: %w", err)
	}
	return Snapshot{Version: m.NetmapVersion, Nodes: ns, Policy: p, Grants: gs}, nil
}

// DeleteNode implements Store.
func (s *SQLite) DeleteNode(ctx context.Context, id wire.NodeID, at time.Time) (Node, error) {
	var n Node
	err := s.writeTx(ctx, func(tx *sql.Tx) (err error) {
		if n, err = deleteNodeTx(ctx, tx, id, at); err != nil {
			return err
		}
		return s.holdReleasedTx(ctx, tx, n)
	})
	if err != nil {
		return Node{}, fmt.Errorf("deleting node %s: %w", id, err)
	}
	return n, nil
}

// deleteNodeTx removes node id within tx (see DeleteNode) and returns it.
func deleteNodeTx(ctx context.Context, tx *sql.Tx, id wire.NodeID, at time.Time) (Node, error) {
	var idx int64
	row := tx.QueryRowContext(ctx, `SELECT addr_index, `+nodeColumns+` FROM nodes WHERE id = ?`, id)
	n, err := scanNode(scanPrefix{row, &idx})
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, ErrNotFound
	}
	if err != nil {
		return Node{}, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE id = ?`, id); err != nil {
		return Node{}, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO retired_addresses (addr_index, ipv4, ipv6, node_id, released)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (addr_index) DO UPDATE SET ipv4 = excluded.ipv4, ipv6 = excluded.ipv6,
			node_id = excluded.node_id, released = excluded.released`,
		idx, n.IPv4.String(), n.IPv6.String(), string(id), toDB(at)); err != nil {
		return Node{}, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO retired_node_ids (id, deleted) VALUES (?, ?)`, string(id), toDB(at)); err != nil {
		return Node{}, err
	}
	if err := endNodeRequestsTx(ctx, tx, id, at); err != nil {
		return Node{}, err
	}
	return n, bumpVersion(ctx, tx)
}

// SetEndpoints implements Store.
func (s *SQLite) SetEndpoints(ctx context.Context, id wire.NodeID, eps []netip.AddrPort, at time.Time) (bool, error) {
	changed := false
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var old string
		err := tx.QueryRowContext(ctx, `SELECT endpoints FROM nodes WHERE id = ?`, id).Scan(&old)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		var oldEps []netip.AddrPort
		if err := json.Unmarshal([]byte(old), &oldEps); err != nil {
			return err
		}
		changed = !slices.Equal(oldEps, eps)
		if !changed {
			_, err := tx.ExecContext(ctx, `UPDATE nodes SET last_seen = ? WHERE id = ?`, toDB(at), id)
			return err
		}
		js, err := marshalEndpoints(eps)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET endpoints = ?, last_seen = ? WHERE id = ?`, js, toDB(at), id); err != nil {
			return err
		}
		return bumpVersion(ctx, tx)
	})
	if err != nil {
		return false, fmt.Errorf("updating endpoints of node %s: %w", id, err)
	}
	return changed, nil
}

// SetCertKey implements Store.
func (s *SQLite) SetCertKey(ctx context.Context, id wire.NodeID, pub ed25519.PublicKey, at time.Time) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("recording certificate key of node %s: bad key", id)
	}
	if err := s.updateOne(ctx, `UPDATE nodes SET cert_pubkey = ?, last_seen = ? WHERE id = ?`, []byte(pub), toDB(at), id); err != nil {
		return fmt.Errorf("recording certificate key of node %s: %w", id, err)
	}
	return nil
}

// Touch implements Store.
func (s *SQLite) Touch(ctx context.Context, id wire.NodeID, at time.Time) error {
	if err := s.updateOne(ctx, `UPDATE nodes SET last_seen = ? WHERE id = ?`, toDB(at), id); err != nil {
		return fmt.Errorf("marking node %s seen: %w", id, err)
	}
	return nil
}

// updateOne runs an UPDATE that must hit exactly one node.
func (s *SQLite) updateOne(ctx context.Context, query string, args ...any) error {
	res, err := s.w.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	c, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if c == 0 {
		return ErrNotFound
	}
	return nil
}
