package store

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
)

// maxLabel is the longest DNS label (RFC 1035).
const maxLabel = 63

// Label turns a host name into a DNS-safe label: the first dot-separated
// part, lowercased, with every character outside [a-z0-9] replaced by "-",
// runs of "-" collapsed, no leading or trailing "-", at most 63 bytes.
// An empty result becomes "node".
func Label(hostname string) string {
	first, _, _ := strings.Cut(strings.TrimSpace(hostname), ".")
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(first) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	l := strings.TrimRight(b.String(), "-")
	if len(l) > maxLabel {
		l = strings.TrimRight(l[:maxLabel], "-")
	}
	if l == "" {
		return "node"
	}
	return l
}

// uniqueName returns base, or base-2, base-3, ... whichever is the first
// not taken by a node, within tx. The result stays a valid label.
func uniqueName(ctx context.Context, tx *sql.Tx, base string) (string, error) {
	taken := make(map[string]bool)
	rows, err := tx.QueryContext(ctx, `SELECT name FROM nodes WHERE name = ? OR name LIKE ?`, base, base+"-%")
	if err != nil {
		return "", err
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return "", err
		}
		taken[n] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", err
	}
	if !taken[base] {
		return base, nil
	}
	for i := 2; ; i++ {
		suffix := "-" + strconv.Itoa(i)
		b := base
		if len(b)+len(suffix) > maxLabel {
			b = strings.TrimRight(b[:maxLabel-len(suffix)], "-")
		}
		if n := b + suffix; !taken[n] {
			// A shortened base can collide with names outside the LIKE
			// set; check that one directly.
			if b != base {
				var c int
				if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM nodes WHERE name = ?`, n).Scan(&c); err != nil {
					return "", err
				}
				if c > 0 {
					continue
				}
			}
			return n, nil
		}
	}
}
