package control

import (
	"strings"
	"testing"

	"github.com/latchnet/latch/wire"
)

func TestParseFingerprint(t *testing.T) {
	var want [32]byte
	for i := range want {
		want[i] = byte(i * 7)
	}
	s := wire.FormatFingerprint(want)
	colons := "sha256:" + strings.ToUpper(strings.Join(splitPairs(strings.TrimPrefix(s, "sha256:")), ":"))
	for _, in := range []string{s, " " + s + "\n", colons} {
		got, err := ParseFingerprint(in)
		if err != nil || got != want {
			t.Errorf("ParseFingerprint(%q) = %x, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "sha256:", "sha1:" + strings.Repeat("0", 64), "sha256:" + strings.Repeat("0", 62), "sha256:" + strings.Repeat("zz", 32)} {
		if _, err := ParseFingerprint(bad); err == nil {
			t.Errorf("ParseFingerprint(%q) accepted", bad)
		}
	}
}

func splitPairs(h string) []string {
	var out []string
	for i := 0; i+2 <= len(h); i += 2 {
		out = append(out, h[i:i+2])
	}
	return out
}
