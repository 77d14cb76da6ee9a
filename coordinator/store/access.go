package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/wire"
)

const accessColumns = `id, src_node_id, src_name, to_service, port, duration, reason, state, created,
	approver, decided, decision_reason, expires, ports, policy_version, revoked_by, revoked, revoke_reason, src_posture`

func scanAccess(row interface{ Scan(...any) error }) (AccessRequest, error) {
	var (
		r                                 AccessRequest
		src                               string
		port                              int64
		duration                          int64
		created, decided, expires, revoke sql.NullInt64
		ports, srcPosture                 string
	)
	if err := row.Scan(&r.ID, &src, &r.SrcName, &r.To, &port, &duration, &r.Reason, &r.State, &created,
		&r.Approver, &decided, &r.DecisionReason, &expires, &ports, &r.PolicyVersion,
		&r.RevokedBy, &revoke, &r.RevokeReason, &srcPosture); err != nil {
		return AccessRequest{}, err
	}
	r.Src = wire.NodeID(src)
	r.Port = uint16(port)
	r.Duration = time.Duration(duration) * time.Microsecond
	r.Created, r.Decided, r.Expires, r.Revoked = fromDB(created), fromDB(decided), fromDB(expires), fromDB(revoke)
	if err := json.Unmarshal([]byte(ports), &r.Ports); err != nil {
		return AccessRequest{}, fmt.Errorf("access request %s ports: %w", r.ID, err)
	}
	if len(r.Ports) == 0 {
		r.Ports = nil
	}
	if err := json.Unmarshal([]byte(srcPosture), &r.SrcPosture); err != nil {
		return AccessRequest{}, fmt.Errorf("access request %s source postures: %w", r.ID, err)
	}
	if len(r.SrcPosture) == 0 {
		r.SrcPosture = nil
	}
	return r, nil
}

func marshalPostures(ps []string) string {
	if ps == nil {
		ps = []string{}
	}
	b, _ := json.Marshal(ps) // strings always marshal
	return string(b)
}

func marshalPorts(ps []PortSpec) (string, error) {
	if ps == nil {
		ps = []PortSpec{}
	}
	b, err := json.Marshal(ps)
	return string(b), err
}

// CreateAccessRequest implements Store.
func (s *SQLite) CreateAccessRequest(ctx context.Context, r AccessRequest) error {
	switch {
	case r.ID == "" || r.Src == "" || r.To == "":
		return errors.New("creating access request: ID, source and service required")
	case r.State != wire.AccessPending && r.State != wire.AccessApproved:
		return fmt.Errorf("creating access request: state %q: want pending or approved", r.State)
	case r.State == wire.AccessApproved && (r.Expires.IsZero() || len(r.Ports) == 0):
		return errors.New("creating access request: an approved request needs Expires and Ports")
	}
	ports, err := marshalPorts(r.Ports)
	if err != nil {
		return fmt.Errorf("creating access request: %w", err)
	}
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM nodes WHERE id = ?`, r.Src).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("source node %s: %w", r.Src, ErrNotFound)
		}
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM access_requests WHERE id = ?`, r.ID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("access request %s: %w", r.ID, ErrAlreadyExists)
		}
		if r.State == wire.AccessApproved && r.PolicyVersion > 0 {
			cur, err := currentPolicyVersion(ctx, tx)
			if err != nil {
				return err
			}
			if cur != r.PolicyVersion {
				return ErrPolicyChanged
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO access_requests (`+accessColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', NULL, '', ?)`,
			r.ID, string(r.Src), r.SrcName, r.To, int64(r.Port), r.Duration.Microseconds(), r.Reason, r.State, toDB(r.Created),
			r.Approver, toDB(r.Decided), r.DecisionReason, toDB(r.Expires), ports, r.PolicyVersion, marshalPostures(r.SrcPosture)); err != nil {
			return err
		}
		if r.State == wire.AccessApproved {
			return bumpVersion(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("creating access request: %w", err)
	}
	return nil
}

// AccessRequest implements Store.
func (s *SQLite) AccessRequest(ctx context.Context, id string) (AccessRequest, error) {
	r, err := scanAccess(s.r.QueryRowContext(ctx, `SELECT `+accessColumns+` FROM access_requests WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return AccessRequest{}, fmt.Errorf("reading access request %s: %w", id, err)
	}
	return r, nil
}

// AccessRequests implements Store.
func (s *SQLite) AccessRequests(ctx context.Context, states ...string) ([]AccessRequest, error) {
	q := `SELECT ` + accessColumns + ` FROM access_requests`
	args := make([]any, len(states))
	if len(states) > 0 {
		q += ` WHERE state IN (?` + strings.Repeat(`, ?`, len(states)-1) + `)`
		for i, st := range states {
			args[i] = st
		}
	}
	rs, err := listAccess(ctx, s.r, q+` ORDER BY created, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("listing access requests: %w", err)
	}
	return rs, nil
}

func listAccess(ctx context.Context, q querier, query string, args ...any) ([]AccessRequest, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var rs []AccessRequest
	for rows.Next() {
		r, err := scanAccess(rows)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, rows.Err()
}

// DecideAccess implements Store.
func (s *SQLite) DecideAccess(ctx context.Context, d Decision) (AccessRequest, error) {
	switch d.To {
	case wire.AccessApproved:
		if d.From != wire.AccessPending || d.Expires.IsZero() || len(d.Ports) == 0 {
			return AccessRequest{}, errors.New("deciding access request: approval needs a pending request, Expires and Ports")
		}
	case wire.AccessDenied:
		if d.From != wire.AccessPending {
			return AccessRequest{}, errors.New("deciding access request: only pending requests are denied")
		}
	case wire.AccessRevoked:
		if d.From != wire.AccessApproved {
			return AccessRequest{}, errors.New("deciding access request: only approved requests are revoked")
		}
	default:
		return AccessRequest{}, fmt.Errorf("deciding access request: unknown state %q", d.To)
	}
	var out AccessRequest
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		r, err := scanAccess(tx.QueryRowContext(ctx, `SELECT `+accessColumns+` FROM access_requests WHERE id = ?`, d.ID))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if r.State != d.From {
			return &StateError{ID: r.ID, State: r.State}
		}
		if d.PolicyVersion > 0 {
			cur, err := currentPolicyVersion(ctx, tx)
			if err != nil {
				return err
			}
			if cur != d.PolicyVersion {
				return ErrPolicyChanged
			}
		}
		at := toDB(d.At)
		switch d.To {
		case wire.AccessApproved:
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM nodes WHERE id = ?`, string(r.Src)).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("source node %s: %w", r.Src, ErrNotFound)
			}
			ports, err := marshalPorts(d.Ports)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `UPDATE access_requests SET state = ?, approver = ?, decided = ?, decision_reason = ?,
				expires = ?, ports = ?, policy_version = ?, src_posture = ? WHERE id = ? AND state = ?`,
				d.To, d.By, at, d.Reason, toDB(d.Expires), ports, d.PolicyVersion, marshalPostures(d.SrcPosture), d.ID, d.From)
			if err != nil {
				return err
			}
		case wire.AccessDenied:
			if _, err := tx.ExecContext(ctx, `UPDATE access_requests SET state = ?, approver = ?, decided = ?, decision_reason = ?
				WHERE id = ? AND state = ?`, d.To, d.By, at, d.Reason, d.ID, d.From); err != nil {
				return err
			}
		case wire.AccessRevoked:
			if _, err := tx.ExecContext(ctx, `UPDATE access_requests SET state = ?, revoked_by = ?, revoked = ?, revoke_reason = ?
				WHERE id = ? AND state = ?`, d.To, d.By, at, d.Reason, d.ID, d.From); err != nil {
				return err
			}
		}
		if d.To != wire.AccessDenied {
			if err := bumpVersion(ctx, tx); err != nil {
				return err
			}
		}
		out, err = scanAccess(tx.QueryRowContext(ctx, `SELECT `+accessColumns+` FROM access_requests WHERE id = ?`, d.ID))
		return err
	})
	if err != nil {
		return AccessRequest{}, fmt.Errorf("deciding access request %s: %w", d.ID, err)
	}
	return out, nil
}

// ExpireGrants implements Store.
func (s *SQLite) ExpireGrants(ctx context.Context, now time.Time) ([]AccessRequest, error) {
	var expired []AccessRequest
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		expired, err = listAccess(ctx, tx, `SELECT `+accessColumns+` FROM access_requests
			WHERE state = ? AND expires <= ? ORDER BY expires, id`, wire.AccessApproved, now.UnixMicro())
		if err != nil || len(expired) == 0 {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE access_requests SET state = ? WHERE state = ? AND expires <= ?`,
			wire.AccessExpired, wire.AccessApproved, now.UnixMicro()); err != nil {
			return err
		}
		for i := range expired {
			expired[i].State = wire.AccessExpired
			e := audit.Entry{Time: now, Actor: audit.ActorSystem, Action: audit.AccessExpire, Target: expired[i].ID,
				Summary: map[string]any{"src": string(expired[i].Src), "to": expired[i].To}}
			if err := appendAuditTx(ctx, tx, &e); err != nil {
				return err
			}
		}
		return bumpVersion(ctx, tx)
	})
	if err != nil {
		return nil, fmt.Errorf("expiring grants: %w", err)
	}
	return expired, nil
}

// NextGrantExpiry implements Store.
func (s *SQLite) NextGrantExpiry(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT MIN(expires) FROM access_requests WHERE state = ?`, wire.AccessApproved).Scan(&next); err != nil {
		return time.Time{}, false, fmt.Errorf("reading next grant expiry: %w", err)
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return fromDB(next), true, nil
}

// endNodeRequestsTx closes the requests of a node being deleted: pending
// ones are denied, active grants revoked, by "system".
func endNodeRequestsTx(ctx context.Context, tx *sql.Tx, id wire.NodeID, at time.Time) error {
	const by, why = "system", "source node deleted"
	if _, err := tx.ExecContext(ctx, `UPDATE access_requests SET state = ?, approver = ?, decided = ?, decision_reason = ?
		WHERE src_node_id = ? AND state = ?`, wire.AccessDenied, by, toDB(at), why, string(id), wire.AccessPending); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE access_requests SET state = ?, revoked_by = ?, revoked = ?, revoke_reason = ?
		WHERE src_node_id = ? AND state = ?`, wire.AccessRevoked, by, toDB(at), why, string(id), wire.AccessApproved)
	return err
}

// activeGrants reads the approved requests whose source node exists.
func activeGrants(ctx context.Context, q querier) ([]AccessRequest, error) {
	return listAccess(ctx, q, `SELECT `+accessColumns+` FROM access_requests
		WHERE state = ? AND src_node_id IN (SELECT id FROM nodes) ORDER BY id`, wire.AccessApproved)
}
