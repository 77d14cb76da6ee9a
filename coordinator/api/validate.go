package api

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/latchnet/latch/wire"
)

// Limits on what agents and admins may send.
const (
	maxHostname    = 255
	maxEndpoints   = 16
	maxTags        = 32
	maxDescription = 256
)

// checkHostname accepts 1 to 255 bytes of printable UTF-8.
func checkHostname(h string) error {
	switch {
	case h == "":
		return errors.New("hostname required")
	case len(h) > maxHostname:
		return fmt.Errorf("hostname longer than %d bytes", maxHostname)
	case !utf8.ValidString(h) || strings.IndexFunc(h, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return errors.New("hostname must be printable UTF-8")
	}
	return nil
}

// checkTag accepts "tag:" followed by 1 to 63 characters of [a-z0-9-_.],
// starting with a letter or digit.
func checkTag(t wire.Tag) error {
	name, ok := strings.CutPrefix(string(t), "tag:")
	if !ok || name == "" || len(name) > 63 {
		return fmt.Errorf("invalid tag %q: want tag:<name>, name of 1-63 characters [a-z0-9-_.]", truncate(string(t), 70))
	}
	for i, r := range name {
		alnum := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || r != '-' && r != '_' && r != '.') {
			return fmt.Errorf("invalid tag %q: want tag:<name>, name of 1-63 characters [a-z0-9-_.] starting with a letter or digit", truncate(string(t), 70))
		}
	}
	return nil
}

func checkTags(tags []wire.Tag) error {
	if len(tags) > maxTags {
		return fmt.Errorf("more than %d tags", maxTags)
	}
	for _, t := range tags {
		if err := checkTag(t); err != nil {
			return err
		}
	}
	return nil
}

// checkEndpoints accepts up to 16 unicast ip:port endpoints with a port.
func checkEndpoints(eps []netip.AddrPort) error {
	if len(eps) > maxEndpoints {
		return fmt.Errorf("more than %d endpoints", maxEndpoints)
	}
	for _, ep := range eps {
		a := ep.Addr()
		if !ep.IsValid() || ep.Port() == 0 || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
			return fmt.Errorf("invalid endpoint %s: want a unicast ip:port", ep)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
