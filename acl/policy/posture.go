package policy

import (
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/tailscale/hujson"

	"github.com/latchnet/latch/wire"
)

// Posture is a named list of conditions on what a node's agent reports
// about its host. A node satisfies the posture when every condition holds.
type Posture struct {
	Name  string // "posture:linux"
	Conds []Condition
	Pos   Pos
}

// Op is the comparison of a posture condition.
type Op uint8

const (
	OpEq Op = iota + 1 // ==
	OpNe               // !=
	OpLt               // <
	OpLe               // <=
	OpGt               // >
	OpGe               // >=
)

var opText = map[string]Op{"==": OpEq, "!=": OpNe, "<": OpLt, "<=": OpLe, ">": OpGt, ">=": OpGe}

// String returns the operator as written: "==", ">=".
func (o Op) String() string {
	for s, op := range opText {
		if op == o {
			return s
		}
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// ordered reports whether o compares by order rather than equality.
func (o Op) ordered() bool { return o == OpLt || o == OpLe || o == OpGt || o == OpGe }

// Condition is one test of one posture attribute: "agent_version >= 0.4".
type Condition struct {
	Attr  string // one of wire.PostureAttributes
	Op    Op
	Value string
	Pos   Pos
}

// String returns the condition's canonical text: "agent_version >= 0.4",
// with the value quoted ('...') when it is not a bare word.
func (c Condition) String() string {
	v := c.Value
	if !bareWord(v) {
		v = "'" + v + "'"
	}
	return c.Attr + " " + c.Op.String() + " " + v
}

// attrKind says how an attribute's values compare.
type attrKind uint8

const (
	attrText    attrKind = iota + 1 // == and != only, exact text
	attrVersion                     // dotted versions, every operator
	attrBool                        // == and != only, true or false
)

func kindOfAttr(attr string) attrKind {
	switch attr {
	case wire.PostureOS, wire.PostureHostname:
		return attrText
	case wire.PostureOSVersion, wire.PostureKernel, wire.PostureAgentVersion:
		return attrVersion
	case wire.PostureFirewall, wire.PostureDiskEncryption:
		return attrBool
	}
	return 0
}

// Holds reports whether the attributes (wire.Posture.Attrs) satisfy c. It
// fails closed: an attribute that is absent or empty makes every
// condition on it false, "!=" included; so do an unknown attribute or
// operator, an ordered operator on a text or boolean attribute, and a
// boolean compared with anything but true or false.
//
// Versions (os_version, kernel, agent_version) compare by dotted
// components, missing components counting as 0 ("0.4" == "0.4.0"). A
// component starting with digits compares by that number first
// ("1.10" > "1.9") and then by the rest as text ("0-18-amd64" > "0");
// other components compare as text.
func (c Condition) Holds(attrs map[string]string) bool {
	v, ok := attrs[c.Attr]
	if !ok || v == "" {
		return false
	}
	var d int
	switch kindOfAttr(c.Attr) {
	case attrVersion:
		d = compareVersions(v, c.Value)
	case attrBool:
		if c.Value != "true" && c.Value != "false" {
			return false
		}
		fallthrough
	case attrText:
		if c.Op.ordered() {
			return false
		}
		if v != c.Value {
			d = 1
		}
	default:
		return false
	}
	switch c.Op {
	case OpEq:
		return d == 0
	case OpNe:
		return d != 0
	case OpLt:
		return d < 0
	case OpLe:
		return d <= 0
	case OpGt:
		return d > 0
	case OpGe:
		return d >= 0
	}
	return false
}

// Satisfies reports whether a node with these posture attributes
// satisfies every named posture. No names: true. A name the policy does
// not define, or a posture without conditions, is never satisfied (fail
// closed), nor is anything on a nil policy.
func (p *Policy) Satisfies(names []string, attrs map[string]string) bool {
	if len(names) == 0 {
		return true
	}
	if p == nil {
		return false
	}
	for _, n := range names {
		pos := p.Postures[n]
		if pos == nil || len(pos.Conds) == 0 {
			return false
		}
		for _, c := range pos.Conds {
			if !c.Holds(attrs) {
				return false
			}
		}
	}
	return true
}

// compareVersions compares dotted versions; see Condition.Holds.
func compareVersions(a, b string) int {
	for a != "" || b != "" {
		var x, y string
		x, a, _ = strings.Cut(a, ".")
		y, b, _ = strings.Cut(b, ".")
		if x == "" {
			x = "0"
		}
		if y == "" {
			y = "0"
		}
		if d := compareComponent(x, y); d != 0 {
			return d
		}
	}
	return 0
}

func compareComponent(x, y string) int {
	xn, xr := leadingDigits(x)
	yn, yr := leadingDigits(y)
	if xn == "" || yn == "" {
		return strings.Compare(x, y)
	}
	// Numbers of any length: without leading zeros, the longer is larger.
	xn, yn = strings.TrimLeft(xn, "0"), strings.TrimLeft(yn, "0")
	if len(xn) != len(yn) {
		if len(xn) < len(yn) {
			return -1
		}
		return 1
	}
	if d := strings.Compare(xn, yn); d != 0 {
		return d
	}
	return strings.Compare(xr, yr)
}

func leadingDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}

// bareWord reports whether v may be written without quotes.
func bareWord(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._+~:-", c) >= 0) {
			return false
		}
	}
	return true
}

const (
	condHelp  = "want ATTRIBUTE OPERATOR VALUE, e.g. agent_version >= 0.4"
	attrsHelp = "os, os_version, kernel, agent_version, hostname, firewall or disk_encryption"
	opsHelp   = "==, !=, <, <=, > or >="
	maxValue  = 253
)

// parseCondition parses "ATTR OP VALUE" (spaces around OP optional; VALUE
// a bare word or '...').
func parseCondition(s string) (Condition, *partErr) {
	if i := strings.IndexByte(s, '*'); i >= 0 {
		return Condition{}, perr(i, wildcardMsg)
	}
	i := 0
	skip := func() {
		for i < len(s) && s[i] == ' ' {
			i++
		}
	}
	skip()
	start := i
	for i < len(s) && ('a' <= s[i] && s[i] <= 'z' || s[i] == '_') {
		i++
	}
	attr := s[start:i]
	if attr == "" {
		return Condition{}, perr(start, "invalid posture condition %s: %s", q(s), condHelp)
	}
	kind := kindOfAttr(attr)
	if kind == 0 {
		return Condition{}, perr(start, "unknown posture attribute %s: want %s", q(attr), attrsHelp)
	}
	skip()
	opAt := i
	for i < len(s) && strings.IndexByte("=!<>", s[i]) >= 0 {
		i++
	}
	op, ok := opText[s[opAt:i]]
	if !ok {
		if i == opAt {
			return Condition{}, perr(opAt, "missing operator after %s: want %s", attr, opsHelp)
		}
		end := i
		for end < len(s) && s[end] != ' ' {
			end++
		}
		return Condition{}, perr(opAt, "unknown operator %s: want %s", q(s[opAt:end]), opsHelp)
	}
	skip()
	valAt := i
	rest := strings.TrimRight(s[i:], " ")
	var val string
	switch {
	case rest == "":
		return Condition{}, perr(valAt, "missing value after %s %s", attr, s[opAt:opAt+len(op.String())])
	case rest[0] == '\'':
		end := strings.IndexByte(rest[1:], '\'')
		if end < 0 {
			return Condition{}, perr(valAt, "unterminated quoted value: close it with '")
		}
		val = rest[1 : 1+end]
		if extra := rest[2+end:]; extra != "" {
			return Condition{}, perr(valAt+2+end, "unexpected %s after the value", q(extra))
		}
		if val == "" {
			return Condition{}, perr(valAt, "empty value")
		}
		for _, r := range val {
			if unicode.IsControl(r) {
				return Condition{}, perr(valAt, "control character in value %s", q(val))
			}
		}
	default:
		val = rest
		if !bareWord(val) {
			return Condition{}, perr(valAt, "bad value %s: write letters, digits and . _ + ~ : - or quote it as '...'", q(val))
		}
	}
	if len(val) > maxValue {
		return Condition{}, perr(valAt, "value longer than %d bytes", maxValue)
	}
	switch kind {
	case attrBool:
		if op.ordered() {
			return Condition{}, perr(opAt, "%s is true or false: use == or !=, not %s", attr, op)
		}
		if val != "true" && val != "false" {
			return Condition{}, perr(valAt, "bad value %s for %s: want true or false", q(val), attr)
		}
	case attrText:
		if op.ordered() {
			return Condition{}, perr(opAt, "%s compares as text: use == or !=, not %s", attr, op)
		}
	}
	return Condition{Attr: attr, Op: op, Value: val}, nil
}

// postures parses the "postures" section.
func (p *parser) postures(v *hujson.Value) error {
	ms, err := p.members(v, `"postures"`)
	if err != nil {
		return err
	}
	p.pol.Postures = make(map[string]*Posture, len(ms))
	for _, m := range ms {
		name := m.key.s
		rest, ok := strings.CutPrefix(name, "posture:")
		if !ok || !validIdent(rest) {
			return p.errAt(m.key.at(0), "invalid posture name %s: want posture:NAME, NAME %s", q(name), identRule)
		}
		ss, err := p.strings(m.val, "conditions of "+name, "empty posture "+name+": list at least one condition")
		if err != nil {
			return err
		}
		pos := &Posture{Name: name, Pos: p.pos(m.key.at(0))}
		seen := map[Condition]bool{}
		for _, s := range ss {
			c, e := parseCondition(s.s)
			if e != nil {
				return p.partErr(s, e)
			}
			if seen[c] {
				return p.errAt(s.at(0), "condition %s listed twice in %s", q(c.String()), name)
			}
			seen[c] = true
			c.Pos = p.pos(s.at(0))
			pos.Conds = append(pos.Conds, c)
		}
		p.pol.Postures[name] = pos
	}
	return nil
}

// postureNames parses a "srcPosture" list: defined posture names, each
// once.
func (p *parser) postureNames(v *hujson.Value) ([]string, error) {
	ss, err := p.strings(v, `"srcPosture"`, `empty "srcPosture": name at least one posture, or leave it out`)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		rest, ok := strings.CutPrefix(s.s, "posture:")
		switch {
		case strings.Contains(s.s, "*"):
			return nil, p.errAt(s.at(strings.IndexByte(s.s, '*')), wildcardMsg)
		case !ok || !validIdent(rest):
			return nil, p.errAt(s.at(0), "invalid posture name %s: want posture:NAME", q(s.s))
		case p.pol.Postures[s.s] == nil:
			return nil, p.errAt(s.at(0), "unknown posture %s: define it in \"postures\"", q(s.s))
		case slices.Contains(out, s.s):
			return nil, p.errAt(s.at(0), "%s listed twice in \"srcPosture\"", q(s.s))
		}
		out = append(out, s.s)
	}
	return out, nil
}

// testPosture parses a test's "posture": {"ATTR": "VALUE" | BOOL, ...}.
func (p *parser) testPosture(v *hujson.Value) (map[string]string, error) {
	ms, err := p.members(v, `test "posture"`)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(ms))
	for _, m := range ms {
		attr := m.key.s
		kind := kindOfAttr(attr)
		if kind == 0 {
			return nil, p.errAt(m.key.at(0), "unknown posture attribute %s: want %s", q(attr), attrsHelp)
		}
		var val string
		switch k := m.val.Value.Kind(); {
		case k == 't' || k == 'f':
			if kind != attrBool {
				return nil, p.errAt(m.val.StartOffset, "%s takes a string, not a boolean", attr)
			}
			val = map[bool]string{true: "true", false: "false"}[k == 't']
		case k == '"':
			s := p.strOf(m.val)
			val = s.s
			switch {
			case val == "":
				return nil, p.errAt(s.at(0), "empty value for %s: leave the attribute out instead", attr)
			case len(val) > maxValue:
				return nil, p.errAt(s.at(0), "value longer than %d bytes", maxValue)
			case strings.ContainsFunc(val, unicode.IsControl):
				return nil, p.errAt(s.at(0), "control character in value %s", q(val))
			case kind == attrBool && val != "true" && val != "false":
				return nil, p.errAt(s.at(0), "bad value %s for %s: want true or false", q(val), attr)
			}
		default:
			return nil, p.errAt(m.val.StartOffset, "%s must be a string, not %s", attr, kindName(m.val.Value))
		}
		out[attr] = val
	}
	return out, nil
}
