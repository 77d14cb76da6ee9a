package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/latchnet/latch/wire"
)

// Flow log bounds.
const (
	// DefaultFlowLimit and MaxFlowLimit bound one listing of flows.
	DefaultFlowLimit = 100
	MaxFlowLimit     = 10000
)

// FlowFilter selects flow records. Zero fields select everything.
type FlowFilter struct {
	// Node matches records whose reporter, source or destination is this
	// node ID; NodeName the same by the names resolved when stored (for
	// nodes deleted since). With both, a record matching either is kept.
	Node     wire.NodeID
	NodeName string
	// Verdict is wire.FlowAccept or wire.FlowDrop.
	Verdict string
	// Since keeps records received at or after it.
	Since time.Time
	// Limit caps the records; 0 means DefaultFlowLimit, and it is at most
	// MaxFlowLimit.
	Limit int
}

const flowColumns = `received, reporter, reporter_name, direction, src, dst, src_node, dst_node,
	src_name, dst_name, proto, dst_port, verdict, reason, rule, packets, bytes, first_seen, last_seen`

// InsertFlows implements Store.
func (s *SQLite) InsertFlows(ctx context.Context, recs []wire.FlowRecord) error {
	if len(recs) == 0 {
		return nil
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var last int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM flows`).Scan(&last); err != nil {
			return err
		}
		st, err := tx.PrepareContext(ctx, `INSERT INTO flows (id, `+flowColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for i := range recs {
			r := &recs[i]
			if r.Packets > math.MaxInt64 || r.Bytes > math.MaxInt64 {
				return fmt.Errorf("flow counters out of range")
			}
			last++
			if _, err := st.ExecContext(ctx, last, r.Received.UnixMicro(), string(r.Reporter), r.ReporterName,
				r.Direction, addrText(r.Src), addrText(r.Dst), string(r.SrcNode), string(r.DstNode),
				r.SrcName, r.DstName, int64(r.Proto), int64(r.DstPort), r.Verdict, r.Reason, r.Rule,
				int64(r.Packets), int64(r.Bytes), r.First.UnixMicro(), r.Last.UnixMicro()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storing flows: %w", err)
	}
	return nil
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// Flows implements Store.
func (s *SQLite) Flows(ctx context.Context, f FlowFilter) ([]wire.FlowRecord, error) {
	var (
		where []string
		args  []any
	)
	var node []string
	if f.Node != "" {
		node = append(node, `reporter = ? OR src_node = ? OR dst_node = ?`)
		args = append(args, string(f.Node), string(f.Node), string(f.Node))
	}
	if f.NodeName != "" {
		node = append(node, `reporter_name = ? OR src_name = ? OR dst_name = ?`)
		args = append(args, f.NodeName, f.NodeName, f.NodeName)
	}
	if len(node) > 0 {
		where = append(where, `(`+strings.Join(node, ` OR `)+`)`)
	}
	if f.Verdict != "" {
		where = append(where, `verdict = ?`)
		args = append(args, f.Verdict)
	}
	if !f.Since.IsZero() {
		where = append(where, `received >= ?`)
		args = append(args, f.Since.UnixMicro())
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultFlowLimit
	}
	limit = min(limit, MaxFlowLimit)
	q := `SELECT ` + flowColumns + ` FROM flows`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing flows: %w", err)
	}
	defer rows.Close()
	out := []wire.FlowRecord{}
	for rows.Next() {
		var (
			r                                    wire.FlowRecord
			received, first, last, proto, port   int64
			packets, bytes                       int64
			reporter, srcNode, dstNode, src, dst string
		)
		if err := rows.Scan(&received, &reporter, &r.ReporterName, &r.Direction, &src, &dst, &srcNode, &dstNode,
			&r.SrcName, &r.DstName, &proto, &port, &r.Verdict, &r.Reason, &r.Rule, &packets, &bytes, &first, &last); err != nil {
			return nil, fmt.Errorf("listing flows: %w", err)
		}
		r.Received = time.UnixMicro(received).UTC()
		r.First = time.UnixMicro(first).UTC()
		r.Last = time.UnixMicro(last).UTC()
		r.Reporter, r.SrcNode, r.DstNode = wire.NodeID(reporter), wire.NodeID(srcNode), wire.NodeID(dstNode)
		r.Src, _ = netip.ParseAddr(src) // "" stays the zero address
		r.Dst, _ = netip.ParseAddr(dst)
		r.Proto, r.DstPort = wire.Proto(proto), uint16(port)
		r.Packets, r.Bytes = uint64(packets), uint64(bytes)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing flows: %w", err)
	}
	return out, nil
}

// PruneFlows implements Store.
func (s *SQLite) PruneFlows(ctx context.Context, before time.Time, max int) (int64, error) {
	var n int64
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if !before.IsZero() {
			res, err := tx.ExecContext(ctx, `DELETE FROM flows WHERE received < ?`, before.UnixMicro())
			if err != nil {
				return err
			}
			d, _ := res.RowsAffected()
			n += d
		}
		if max > 0 {
			// Keep the newest max records: delete every id at or below
			// the (max+1)-th newest.
			var cut int64
			err := tx.QueryRowContext(ctx, `SELECT id FROM flows ORDER BY id DESC LIMIT 1 OFFSET ?`, max).Scan(&cut)
			switch {
			case err == sql.ErrNoRows:
			case err != nil:
				return err
			default:
				res, err := tx.ExecContext(ctx, `DELETE FROM flows WHERE id <= ?`, cut)
				if err != nil {
					return err
				}
				d, _ := res.RowsAffected()
				n += d
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("pruning flows: %w", err)
	}
	return n, nil
}
