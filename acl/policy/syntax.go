package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/latchnet/latch/wire"
)

// The text forms of names. These functions check form only; whether a
// name is defined is the parser's business.

const (
	identRule = "1-63 characters a-z, 0-9, -, _ or . starting with a letter or digit"
	labelRule = "a DNS label: 1-63 characters a-z, 0-9 or -, not starting or ending with -"
	portsHelp = "want e.g. 22/tcp, 8000-8100/udp, icmp or a bare 22 (TCP and UDP)"
	destHelp  = "destinations are svc:NAME, tag:NAME:PORTS or status:quarantined:PORTS"
	maxUser   = 254
	// maxPorts bounds one list of ports, which is checked for overlaps
	// pair by pair.
	maxPorts = 256
)

// wildcardMsg refuses "*": Latch has no wildcard, because a wildcard would
// silently widen access to whatever joins later.
const wildcardMsg = `"*" is not allowed: a wildcard would widen access; name the tags, groups, users or ports you mean`

// validIdent reports whether s is a tag, group or service name (the part
// after the prefix). It is the rule the coordinator applies to node tags.
func validIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '-' && c != '_' && c != '.') {
			return false
		}
	}
	return true
}

// validLabel reports whether s is a node name: a lowercase DNS label, the
// form the coordinator gives every node.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validUser reports whether s is a user name: "local@domain", printable,
// no spaces, no ':' (which would make it look like a prefixed name).
func validUser(s string) bool {
	at := strings.IndexByte(s, '@')
	if len(s) > maxUser || at <= 0 || at == len(s)-1 || strings.Count(s, "@") != 1 {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == ':' || r == ',' || r == '"' {
			return false
		}
	}
	return true
}

// selectorPrefixes are the prefixed selector kinds, with how each name
// after the prefix is checked.
var selectorPrefixes = []struct {
	prefix string
	kind   SelectorKind
	valid  func(string) bool
	what   string
	rule   string
}{
	{"tag:", SelTag, validIdent, "tag", identRule},
	{"group:", SelGroup, validIdent, "group name", identRule},
	{"svc:", SelService, validIdent, "service name", identRule},
	{"node:", SelNode, validLabel, "node name", labelRule},
}

// parseSelector checks the form of a selector: "tag:NAME", "group:NAME",
// "svc:NAME", "node:NAME", "status:quarantined" or a user "name@domain".
func parseSelector(s string) (Selector, *partErr) {
	if i := strings.IndexByte(s, '*'); i >= 0 {
		return Selector{}, perr(i, wildcardMsg)
	}
	if s == "" {
		return Selector{}, perr(0, "empty name")
	}
	if rest, ok := strings.CutPrefix(s, "status:"); ok {
		if s == QuarantinedName {
			return Selector{Kind: SelQuarantined, Name: s}, nil
		}
		if strings.HasPrefix(rest, "quarantined:") {
			return Selector{}, perr(0, "%s: this names nodes and takes no ports", q(s))
		}
		return Selector{}, perr(0, "unknown status %s: the only status is %s", q(s), QuarantinedName)
	}
	for _, k := range selectorPrefixes {
		rest, ok := strings.CutPrefix(s, k.prefix)
		if !ok {
			continue
		}
		if (k.kind == SelTag || k.kind == SelService) && strings.Contains(rest, ":") {
			return Selector{}, perr(0, "%s: this names nodes and takes no ports", q(s))
		}
		if !k.valid(rest) {
			return Selector{}, perr(0, "invalid %s %s: want %sNAME, NAME %s", k.what, q(s), k.prefix, k.rule)
		}
		return Selector{Kind: k.kind, Name: s}, nil
	}
	switch {
	case validUser(s):
		return Selector{Kind: SelUser, Name: s}, nil
	case strings.Contains(s, "@") && !strings.Contains(s, ":"):
		return Selector{}, perr(0, "invalid user %s: want a user name like alice@example.com", q(s))
	}
	return Selector{}, perr(0, "unknown name %s: want tag:NAME, group:NAME, svc:NAME, node:NAME or a user like alice@example.com", q(s))
}

// parseTarget checks the form of a destination: "svc:NAME" (Ports left
// for the caller to fill from the service), "tag:NAME:PORTS" or
// "status:quarantined:PORTS".
func parseTarget(s string) (Target, *partErr) {
	if i := strings.IndexByte(s, '*'); i >= 0 {
		return Target{}, perr(i, wildcardMsg)
	}
	if rest, ok := strings.CutPrefix(s, "svc:"); ok {
		if strings.Contains(rest, ":") {
			return Target{}, perr(0, "%s: a service target takes no ports (they come from the service definition)", q(s))
		}
		if !validIdent(rest) {
			return Target{}, perr(0, "invalid service name %s: want svc:NAME, NAME %s", q(s), identRule)
		}
		return Target{Sel: Selector{Kind: SelService, Name: s}}, nil
	}
	if rest, ok := strings.CutPrefix(s, "tag:"); ok {
		name, ports, found := strings.Cut(rest, ":")
		if !validIdent(name) {
			return Target{}, perr(0, "invalid tag %s: want tag:NAME, NAME %s", q("tag:"+name), identRule)
		}
		if !found {
			return Target{}, perr(0, "%s needs ports: write tag:%s:PORTS, e.g. tag:%s:5432/tcp", q(s), name, name)
		}
		specs, err := parsePorts(ports, len("tag:")+len(name)+1)
		if err != nil {
			return Target{}, err
		}
		return Target{Sel: Selector{Kind: SelTag, Name: "tag:" + name}, Ports: specs}, nil
	}
	if rest, ok := strings.CutPrefix(s, QuarantinedName); ok && (rest == "" || rest[0] == ':') {
		if rest == "" {
			return Target{}, perr(0, "%s needs ports: write %s:PORTS, e.g. %s:22/tcp", q(s), s, s)
		}
		specs, err := parsePorts(rest[1:], len(QuarantinedName)+1)
		if err != nil {
			return Target{}, err
		}
		return Target{Sel: Selector{Kind: SelQuarantined, Name: QuarantinedName}, Ports: specs}, nil
	}
	if sel, err := parseSelector(s); err == nil {
		return Target{}, perr(0, "%s cannot be a destination: %s", q(sel.Name), destHelp)
	}
	return Target{}, perr(0, "unknown destination %s: %s", q(s), destHelp)
}

// parsePorts parses a comma list of port specs; base is the index of s in
// the string being parsed, for error places. Overlapping specs are
// refused: a list says each port once.
func parsePorts(s string, base int) ([]PortSpec, *partErr) {
	if strings.Trim(s, " ") == "" {
		return nil, perr(base, "missing ports: %s", portsHelp)
	}
	var out []PortSpec
	off := 0
	for part := range strings.SplitSeq(s, ",") {
		item := strings.TrimLeft(part, " ")
		at := base + off + len(part) - len(item)
		specs, err := parsePortSpec(strings.TrimRight(item, " "), at)
		if err != nil {
			return nil, err
		}
		if err := addSpecs(&out, specs, at); err != nil {
			return nil, err
		}
		off += len(part) + 1
	}
	return out, nil
}

// addSpecs appends specs to out, refusing one that overlaps a spec
// already there.
func addSpecs(out *[]PortSpec, specs []PortSpec, at int) *partErr {
	for _, n := range specs {
		if len(*out) >= maxPorts {
			return perr(at, "more than %d ports in one list: use ranges", maxPorts)
		}
		for _, o := range *out {
			if n == o {
				return perr(at, "%s is listed twice", n)
			}
			if overlap(n, o) {
				return perr(at, "%s overlaps %s listed before", n, o)
			}
		}
		*out = append(*out, n)
	}
	return nil
}

// overlap reports whether a and b share a protocol and a port.
func overlap(a, b PortSpec) bool {
	if a.Proto != b.Proto {
		return false
	}
	return a.Proto == wire.ProtoICMP || a.Ports.First <= b.Ports.Last && b.Ports.First <= a.Ports.Last
}

// parsePortSpec parses one of "22/tcp", "8000-8100/udp", "icmp", "22" or
// "22-25" (the bare forms mean TCP and UDP and give two specs); at is its
// index in the string being parsed.
func parsePortSpec(s string, at int) ([]PortSpec, *partErr) {
	if i := strings.IndexByte(s, '*'); i >= 0 {
		return nil, perr(at+i, wildcardMsg)
	}
	if s == "" {
		return nil, perr(at, "empty port in list: %s", portsHelp)
	}
	if s == "icmp" {
		return []PortSpec{{Proto: wire.ProtoICMP}}, nil
	}
	num, proto, slash := strings.Cut(s, "/")
	if slash {
		var p wire.Proto
		switch proto {
		case "tcp":
			p = wire.ProtoTCP
		case "udp":
			p = wire.ProtoUDP
		case "icmp":
			return nil, perr(at, "icmp takes no port: write icmp")
		default:
			return nil, perr(at+len(num)+1, "unknown protocol %s: want tcp, udp or icmp (icmp covers ICMPv6 too)", q(proto))
		}
		if num == "" {
			return nil, perr(at, "missing port before /%s", proto)
		}
		r, err := parseRange(num, at)
		if err != nil {
			return nil, err
		}
		return []PortSpec{{Proto: p, Ports: r}}, nil
	}
	if s == "tcp" || s == "udp" {
		return nil, perr(at, "%s needs a port, e.g. 22/%s", s, s)
	}
	if c := s[0]; 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
		return nil, perr(at, "unknown protocol %s: want tcp, udp or icmp (icmp covers ICMPv6 too)", q(s))
	}
	r, err := parseRange(s, at)
	if err != nil {
		return nil, err
	}
	return []PortSpec{{Proto: wire.ProtoTCP, Ports: r}, {Proto: wire.ProtoUDP, Ports: r}}, nil
}

// parseRange parses "22" or "8000-8100".
func parseRange(s string, at int) (wire.PortRange, *partErr) {
	a, b, dash := strings.Cut(s, "-")
	first, err := parsePort(a, at)
	if err != nil {
		return wire.PortRange{}, err
	}
	if !dash {
		return wire.PortRange{First: first, Last: first}, nil
	}
	last, err := parsePort(b, at+len(a)+1)
	if err != nil {
		return wire.PortRange{}, err
	}
	if first > last {
		return wire.PortRange{}, perr(at, "reversed port range %s: the first port is above the last", s)
	}
	return wire.PortRange{First: first, Last: last}, nil
}

// parsePort parses a decimal port number 1-65535.
func parsePort(s string, at int) (uint16, *partErr) {
	if s == "" {
		return 0, perr(at, "missing port number: %s", portsHelp)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, perr(at, "invalid port %s: %s", q(s), portsHelp)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || len(s) > 5 || n < 1 || n > 65535 {
		return 0, perr(at, "port %s out of range 1-65535", s)
	}
	return uint16(n), nil
}

// ParseTarget parses the text form of a target as the CLI takes it
// ("svc:db", "tag:db:5432/tcp") without a policy: it checks the form only.
// For a service, Ports is nil: the service's ports come from the policy.
// Errors are *Error without a place.
func ParseTarget(s string) (Target, error) {
	t, err := parseTarget(s)
	if err != nil {
		return Target{}, &Error{Msg: err.msg}
	}
	return t, nil
}

// String returns the text form: "icmp", "22/tcp", "8000-8100/udp".
func (s PortSpec) String() string {
	var proto string
	switch s.Proto {
	case wire.ProtoICMP:
		return "icmp"
	case wire.ProtoTCP:
		proto = "tcp"
	case wire.ProtoUDP:
		proto = "udp"
	default:
		proto = "proto-" + strconv.Itoa(int(s.Proto))
	}
	if s.Ports.First == s.Ports.Last {
		return fmt.Sprintf("%d/%s", s.Ports.First, proto)
	}
	return fmt.Sprintf("%d-%d/%s", s.Ports.First, s.Ports.Last, proto)
}

// String returns the canonical text of a target: a service's name, or
// "tag:NAME:" and its ports sorted ("tag:db:22/tcp,22/udp" for a
// written "tag:db:22"). Equal strings mean equal targets.
func (t Target) String() string {
	if t.Sel.Kind == SelService {
		return t.Sel.Name
	}
	specs := slices.Clone(t.Ports)
	slices.SortFunc(specs, comparePortSpec)
	parts := make([]string, len(specs))
	for i, s := range specs {
		parts[i] = s.String()
	}
	return t.Sel.Name + ":" + strings.Join(parts, ",")
}

func comparePortSpec(a, b PortSpec) int {
	if a.Proto != b.Proto {
		return int(a.Proto) - int(b.Proto)
	}
	if a.Ports.First != b.Ports.First {
		return int(a.Ports.First) - int(b.Ports.First)
	}
	return int(a.Ports.Last) - int(b.Ports.Last)
}
