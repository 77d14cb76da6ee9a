package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

// Overlay addresses are numbered by an index into 100.64.0.0/10. Index i
// is IPv4 100.64.0.0+i and IPv6 <ULA /48>::<i> (i in the low 32 bits), so
// a node's two addresses always correspond. Indexes whose IPv4 ends in .0
// or .255 are never used.
const poolSize = 1 << 22

var poolBase = netip.MustParseAddr("100.64.0.0")

// usableIndex reports whether index i may be handed out. The pool base is
// /10-aligned, so the low byte of i is the address's last octet.
func usableIndex(i uint32) bool {
	low := i & 0xff
	return low != 0 && low != 0xff
}

func ipv4At(i uint32) netip.Addr {
	b := poolBase.As4()
	binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+i)
	return netip.AddrFrom4(b)
}

func ipv6At(ula netip.Prefix, i uint32) netip.Addr {
	a := ula.Addr().As16()
	binary.BigEndian.PutUint32(a[12:], i)
	return netip.AddrFrom16(a)
}

// allocateAddress picks the next free index after the cursor and advances
// the cursor, within tx. Allocation is monotonic: a released index comes
// around again only after the cursor wraps, and even then only once its
// hold time has passed, so an address never moves to another identity
// while a peer may still hold a rule for it.
func (s *SQLite) allocateAddress(ctx context.Context, tx *sql.Tx, now time.Time) (uint32, netip.Addr, netip.Addr, error) {
	var (
		cursor int64
		ulaStr string
	)
	if err := tx.QueryRowContext(ctx, `SELECT addr_cursor, ula_prefix FROM meta WHERE id = 1`).Scan(&cursor, &ulaStr); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, netip.Addr{}, netip.Addr{}, errors.New("store not initialized")
		}
		return 0, netip.Addr{}, netip.Addr{}, err
	}
	ula, err := netip.ParsePrefix(ulaStr)
	if err != nil {
		return 0, netip.Addr{}, netip.Addr{}, err
	}
	pool := int64(s.opts.PoolSize)
	heldSince := now.Add(-s.opts.AddressHold).UnixMicro()
	for step := int64(1); step <= pool; step++ {
		idx := uint32((cursor + step) % pool)
		if !usableIndex(idx) {
			continue
		}
		var inUse int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM nodes WHERE addr_index = ?`, idx).Scan(&inUse); err != nil {
			return 0, netip.Addr{}, netip.Addr{}, err
		}
		if inUse > 0 {
			continue
		}
		var released sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT released FROM retired_addresses WHERE addr_index = ?`, idx).Scan(&released)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return 0, netip.Addr{}, netip.Addr{}, err
		case released.Int64 > heldSince, s.heldForStreams(idx):
			continue // still held
		default:
			if _, err := tx.ExecContext(ctx, `DELETE FROM retired_addresses WHERE addr_index = ?`, idx); err != nil {
				return 0, netip.Addr{}, netip.Addr{}, err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE meta SET addr_cursor = ? WHERE id = 1`, idx); err != nil {
			return 0, netip.Addr{}, netip.Addr{}, err
		}
		return idx, ipv4At(idx), ipv6At(ula, idx), nil
	}
	return 0, netip.Addr{}, netip.Addr{}, ErrAddressPoolExhausted
}
