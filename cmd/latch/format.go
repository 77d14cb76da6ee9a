package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/latchnet/latch/wire"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// relTime renders t relative to now, to the second: "in 29m10s",
// "3s ago"; far-off times also get the date.
func relTime(t, now time.Time) string {
	d := t.Sub(now).Round(time.Second)
	var rel string
	switch {
	case d == 0:
		rel = "now"
	case d > 0:
		rel = "in " + d.String()
	default:
		rel = (-d).String() + " ago"
	}
	if d > 24*time.Hour || d < -24*time.Hour {
		return t.UTC().Format("2006-01-02 15:04 UTC")
	}
	return rel
}

// bytesStr renders a byte count with binary units.
func bytesStr(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// msStr renders a duration in milliseconds with microsecond precision,
// as ping does.
func msStr(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func tagList(tags []wire.Tag) string {
	if len(tags) == 0 {
		return "-"
	}
	s := make([]string, len(tags))
	for i, t := range tags {
		s[i] = string(t)
	}
	return strings.Join(s, ",")
}
