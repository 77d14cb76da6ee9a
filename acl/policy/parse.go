package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tailscale/hujson"

	"github.com/latchnet/latch/wire"
)

const (
	// MaxSize bounds the policy text Parse accepts, in bytes.
	MaxSize = 1 << 20
	// MaxDuration bounds an access rule's maxDuration.
	MaxDuration = 30 * 24 * time.Hour
	// maxDepth bounds the nesting of objects and arrays; the format needs 4.
	maxDepth = 8
)

// Parse parses and validates a policy. It does not run the policy's tests
// (see RunTests). Every refusal is an *Error with the line and column of
// the offending text (columns count characters, not bytes): inside a
// string, the offending part of it; for a missing field, the opening
// brace of its object. An empty document (nothing, or only whitespace and
// comments) and "{}" are the empty policy, which admits nothing.
//
// The document is one object with these keys, all optional, in any order:
//
//	"groups":    {"group:NAME": ["USER", ...], ...}
//	"tagOwners": {"tag:NAME": ["USER" | "group:NAME", ...], ...}
//	"services":  {"svc:NAME": {"tags": ["tag:NAME", ...], "ports": ["PORT", ...]}, ...}
//	"postures":  {"posture:NAME": ["CONDITION", ...], ...}
//	"rules":     [{"src": [SELECTOR | status:quarantined, ...], "srcPosture": ["posture:NAME", ...],
//	               "dst": [TARGET | status:quarantined:PORTS, ...]}, ...]
//	"access":    [{"src": [SELECTOR, ...], "srcPosture": ["posture:NAME", ...], "dst": [TARGET, ...],
//	               "approvers": ["USER" | "group:NAME", ...], "autoApprove": BOOL,
//	               "maxDuration": "DURATION"}, ...]
//	"tests":     [{"src": SELECTOR | status:quarantined, "posture": {"ATTR": "VALUE" | BOOL, ...},
//	               "quarantined": BOOL,
//	               "accept": [TARGET | status:quarantined:PORTS, ...], "deny": [...]}, ...]
//
//	NAME     1-63 characters a-z 0-9 - _ . starting with a letter or digit
//	USER     name@domain (printable, no spaces, no ':'); compared exactly
//	SELECTOR tag:NAME | group:NAME | svc:NAME | node:LABEL | USER
//	         (LABEL: a lowercase DNS label, the form of node names)
//	TARGET   svc:NAME | tag:NAME:PORTS
//	CONDITION ATTR OP VALUE    (spaces around OP optional)
//	ATTR     os | hostname                         (OP == or != only)
//	         | os_version | kernel | agent_version (any OP; dotted versions)
//	         | firewall | disk_encryption          (OP == or != only; VALUE true or false)
//	OP       == | != | < | <= | > | >=
//	VALUE    a bare word of A-Z a-z 0-9 . _ + ~ : - | 'TEXT' (no ' or control characters)
//	PORTS    PORT[,PORT...]   (spaces after commas allowed)
//	PORT     N/tcp | N-M/tcp | N/udp | N-M/udp | icmp | N | N-M
//	         (N, M in 1-65535, N <= M; bare N or N-M means TCP and UDP;
//	         icmp means ICMP and ICMPv6)
//	DURATION a Go duration ("30m", "1h30m"), above zero, at most 720h
//
// Refused: unknown keys anywhere, wrong JSON types, a key twice in one
// object (a service or group defined twice), a name or port listed twice
// or overlapping in one list, tags not in tagOwners, undefined groups and
// services, groups holding groups, "*" anywhere, empty "src" or "dst",
// services without tags or ports, access rules without "approvers" and
// without "autoApprove": true, access rules without "maxDuration", tests
// with nothing to check or whose source group has no members, two
// rules with the same sources, postures and destinations, conditions that
// do not fit the grammar above, empty posture lists, undefined postures,
// and status:quarantined in access rules. Input over MaxSize or
// nested deeper than the format needs is refused before parsing.
func Parse(src []byte) (*Policy, error) {
	t := newText(src)
	if len(src) > MaxSize {
		return nil, t.errAt(MaxSize, "policy is larger than %d bytes", MaxSize)
	}
	if !utf8.Valid(src) {
		i := 0
		for i < len(src) {
			r, n := utf8.DecodeRune(src[i:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			i += n
		}
		return nil, t.errAt(i, "invalid UTF-8")
	}
	if off := tooDeep(src); off >= 0 {
		return nil, t.errAt(off, "nested more than %d levels deep", maxDepth)
	}
	pol := &Policy{
		Groups:    map[string][]string{},
		TagOwners: map[wire.Tag][]string{},
		Services:  map[string]*Service{},
		Source:    bytes.Clone(src),
	}
	// hujson wants a newline after a final line comment; the extra byte
	// moves no offset inside src.
	buf := append(bytes.Clone(src), '\n')
	root, err := hujson.Parse(buf)
	if err != nil {
		if onlyComments(src) {
			return pol, nil
		}
		return nil, t.syntaxError(err)
	}
	p := &parser{text: t, pol: pol}
	if err := p.document(&root); err != nil {
		return nil, err
	}
	return pol, nil
}

// tooDeep returns the offset of the first bracket that opens more than
// maxDepth levels, or -1. It follows hujson's lexing of strings and
// comments, so up to the first syntax error its depth is hujson's
// recursion depth; this bounds the recursion before hujson runs.
func tooDeep(b []byte) int {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '/':
			switch {
			case i+1 < len(b) && b[i+1] == '/':
				if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
					i += j
				} else {
					i = len(b)
				}
			case i+1 < len(b) && b[i+1] == '*':
				if j := bytes.Index(b[i+2:], []byte("*/")); j >= 0 {
					i += 2 + j + 1
				} else {
					i = len(b)
				}
			}
		case '{', '[':
			if depth++; depth > maxDepth {
				return i
			}
		case '}', ']':
			depth--
		}
	}
	return -1
}

// onlyComments reports whether src holds no value: only whitespace and
// well-formed comments.
func onlyComments(src []byte) bool {
	b := append(bytes.Clone(src), "\nnull"...)
	v, err := hujson.Parse(b)
	return err == nil && v.StartOffset > len(src)
}

// syntaxError turns a hujson error ("hujson: line L, column C: msg", C in
// bytes) into an *Error.
func (t *text) syntaxError(err error) error {
	var line, col int
	off := len(t.src)
	if n, _ := fmt.Sscanf(err.Error(), "hujson: line %d, column %d:", &line, &col); n == 2 {
		off = t.offset(line, col)
	}
	msg := err.Error()
	if inner := errors.Unwrap(err); inner != nil {
		msg = inner.Error()
	}
	// hujson quotes some text raw; keep the message one line.
	if lit, ok := strings.CutPrefix(msg, "invalid literal: "); ok {
		msg = "invalid value " + q(lit)
	}
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, msg)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		switch {
		case strings.HasPrefix(msg, "parsing string"):
			msg = "unterminated string"
		case strings.HasPrefix(msg, "parsing comment"):
			msg = "unterminated comment"
		default:
			msg = "unexpected end of input"
		}
	}
	return t.errAt(off, "syntax error: %s", msg)
}

// parser walks the hujson tree into a Policy.
type parser struct {
	*text
	pol *Policy
}

// str is a JSON string and where it is.
type str struct {
	s   string
	off int  // offset of the opening quote
	esc bool // the raw text has escapes: indices into s do not map to offsets
}

// at returns the offset of byte i of s in the text (the start of the
// string's content when escapes make that unknowable).
func (s str) at(i int) int {
	if s.esc {
		return s.off + 1
	}
	return s.off + 1 + i
}

// member is one key and value of an object.
type member struct {
	key str
	val *hujson.Value
}

func kindName(v hujson.ValueTrimmed) string {
	switch v.Kind() {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't', 'f':
		return "a boolean"
	}
	return "null"
}

func (p *parser) partErr(s str, e *partErr) error {
	return p.errAt(s.at(e.i), "%s", e.msg)
}

// members returns an object's members, refusing a key given twice.
func (p *parser) members(v *hujson.Value, what string) ([]member, error) {
	obj, ok := v.Value.(*hujson.Object)
	if !ok {
		return nil, p.errAt(v.StartOffset, "%s must be an object, not %s", what, kindName(v.Value))
	}
	seen := make(map[string]int, len(obj.Members))
	out := make([]member, 0, len(obj.Members))
	for i := range obj.Members {
		m := &obj.Members[i]
		k := p.strOf(&m.Name)
		if first, dup := seen[k.s]; dup {
			fp := p.pos(first)
			return nil, p.errAt(k.at(0), "%s defined twice (first at line %d, column %d)", q(k.s), fp.Line, fp.Col)
		}
		seen[k.s] = k.at(0)
		out = append(out, member{key: k, val: &m.Value})
	}
	return out, nil
}

// fields returns an object's members by key, refusing keys not in known.
func (p *parser) fields(v *hujson.Value, what string, known ...string) (map[string]*hujson.Value, error) {
	ms, err := p.members(v, what)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*hujson.Value, len(ms))
	for _, m := range ms {
		if !slices.Contains(known, m.key.s) {
			return nil, p.errAt(m.key.at(0), "unknown key %s in %s (want %s)", q(m.key.s), what, strings.Join(known, ", "))
		}
		out[m.key.s] = m.val
	}
	return out, nil
}

// strOf returns the string of a literal known to be a JSON string.
func (p *parser) strOf(v *hujson.Value) str {
	lit, _ := v.Value.(hujson.Literal)
	return str{s: lit.String(), off: v.StartOffset, esc: bytes.IndexByte(lit, '\\') >= 0}
}

func (p *parser) string(v *hujson.Value, what string) (str, error) {
	if v.Value.Kind() != '"' {
		return str{}, p.errAt(v.StartOffset, "%s must be a string, not %s", what, kindName(v.Value))
	}
	return p.strOf(v), nil
}

func (p *parser) array(v *hujson.Value, what string) ([]hujson.Value, error) {
	arr, ok := v.Value.(*hujson.Array)
	if !ok {
		return nil, p.errAt(v.StartOffset, "%s must be an array, not %s", what, kindName(v.Value))
	}
	return arr.Elements, nil
}

// strings returns an array of strings; a non-empty emptyMsg refuses an
// empty array with that message.
func (p *parser) strings(v *hujson.Value, what, emptyMsg string) ([]str, error) {
	arr, ok := v.Value.(*hujson.Array)
	if !ok {
		return nil, p.errAt(v.StartOffset, "%s must be an array of strings, not %s", what, kindName(v.Value))
	}
	if emptyMsg != "" && len(arr.Elements) == 0 {
		return nil, p.errAt(v.StartOffset, "%s", emptyMsg)
	}
	out := make([]str, 0, len(arr.Elements))
	for i := range arr.Elements {
		e := &arr.Elements[i]
		if e.Value.Kind() != '"' {
			return nil, p.errAt(e.StartOffset, "%s must be an array of strings, found %s", what, kindName(e.Value))
		}
		out = append(out, p.strOf(e))
	}
	return out, nil
}

var sections = []string{"groups", "tagOwners", "services", "postures", "rules", "access", "tests"}

// document parses the top-level object. Sections are taken in dependency
// order, whatever their order in the text.
func (p *parser) document(root *hujson.Value) error {
	f, err := p.fields(root, "the policy", sections...)
	if err != nil {
		return err
	}
	steps := []struct {
		key string
		fn  func(*hujson.Value) error
	}{
		{"groups", p.groups},
		{"tagOwners", p.tagOwners},
		{"services", p.services},
		{"postures", p.postures},
		{"rules", p.rules},
		{"access", p.access},
		{"tests", p.tests},
	}
	for _, s := range steps {
		if v := f[s.key]; v != nil {
			if err := s.fn(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// selector parses s as a selector of one of the allowed kinds and checks
// that what it names is defined; notAllowed formats the refusal of
// another kind, with the name.
func (p *parser) selector(s str, allowed []SelectorKind, notAllowed string) (Selector, error) {
	sel, e := parseSelector(s.s)
	if e != nil {
		return Selector{}, p.partErr(s, e)
	}
	if !slices.Contains(allowed, sel.Kind) {
		return Selector{}, p.errAt(s.at(0), notAllowed, q(s.s))
	}
	sel.Pos = p.pos(s.at(0))
	return sel, p.defined(sel.Kind, sel.Name, s.at(0))
}

// defined checks that a tag, group or service name is defined.
func (p *parser) defined(kind SelectorKind, name string, off int) error {
	switch kind {
	case SelTag:
		if _, ok := p.pol.TagOwners[wire.Tag(name)]; !ok {
			return p.errAt(off, "unknown tag %s: a tag must be listed in tagOwners", q(name))
		}
	case SelGroup:
		if _, ok := p.pol.Groups[name]; !ok {
			return p.errAt(off, "unknown group %s", q(name))
		}
	case SelService:
		if _, ok := p.pol.Services[name]; !ok {
			return p.errAt(off, "unknown service %s", q(name))
		}
	}
	return nil
}

// selectors parses a list of distinct selectors; see strings for emptyMsg.
func (p *parser) selectors(v *hujson.Value, what, emptyMsg string, allowed []SelectorKind, notAllowed string) ([]Selector, error) {
	ss, err := p.strings(v, what, emptyMsg)
	if err != nil {
		return nil, err
	}
	out := make([]Selector, 0, len(ss))
	seen := make(map[string]bool, len(ss))
	for _, s := range ss {
		sel, err := p.selector(s, allowed, notAllowed)
		if err != nil {
			return nil, err
		}
		if seen[sel.Name] {
			return nil, p.errAt(s.at(0), "%s listed twice in %s", q(sel.Name), what)
		}
		seen[sel.Name] = true
		out = append(out, sel)
	}
	return out, nil
}

// target parses s as a destination and checks what it names is defined.
func (p *parser) target(s str) (Target, error) {
	t, e := parseTarget(s.s)
	if e != nil {
		return Target{}, p.partErr(s, e)
	}
	if err := p.defined(t.Sel.Kind, t.Sel.Name, s.at(0)); err != nil {
		return Target{}, err
	}
	if t.Sel.Kind == SelService {
		t.Ports = slices.Clone(p.pol.Services[t.Sel.Name].Ports)
	}
	t.Pos = p.pos(s.at(0))
	t.Sel.Pos = t.Pos
	return t, nil
}

// targets parses a list of distinct destinations; see strings for
// emptyMsg.
func (p *parser) targets(v *hujson.Value, what, emptyMsg string) ([]Target, error) {
	ss, err := p.strings(v, what, emptyMsg)
	if err != nil {
		return nil, err
	}
	out := make([]Target, 0, len(ss))
	seen := make(map[string]bool, len(ss))
	for _, s := range ss {
		t, err := p.target(s)
		if err != nil {
			return nil, err
		}
		k := t.String()
		if seen[k] {
			return nil, p.errAt(s.at(0), "%s listed twice in %s", q(s.s), what)
		}
		seen[k] = true
		out = append(out, t)
	}
	return out, nil
}

// names returns the selectors' names, never nil.
func names(sels []Selector) []string {
	out := make([]string, len(sels))
	for i, s := range sels {
		out[i] = s.Name
	}
	return out
}

var (
	allKinds = []SelectorKind{SelTag, SelGroup, SelUser, SelService, SelNode}
	srcKinds = []SelectorKind{SelTag, SelGroup, SelUser, SelService, SelNode, SelQuarantined}
)

// noQuarantineAccess refuses status:quarantined in an access rule.
const noQuarantineAccess = "%s has no place in an access rule: grants from or to quarantined nodes are inert"

var (
	userOrGroup = []SelectorKind{SelUser, SelGroup}
)

// defName checks the key that defines a group, tag or service.
func (p *parser) defName(key str, kind SelectorKind, prefix, what string) error {
	if strings.HasPrefix(key.s, prefix) || strings.Contains(key.s, "*") {
		sel, e := parseSelector(key.s)
		if e != nil {
			return p.partErr(key, e)
		}
		if sel.Kind == kind {
			return nil
		}
	}
	return p.errAt(key.at(0), "%s %s", what, q(key.s))
}

func (p *parser) groups(v *hujson.Value) error {
	ms, err := p.members(v, `"groups"`)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if err := p.defName(m.key, SelGroup, "group:", "group names look like group:NAME, not"); err != nil {
			return err
		}
		sels, err := p.selectors(m.val, "members of "+m.key.s, "", []SelectorKind{SelUser}, "groups hold users, not %s")
		if err != nil {
			return err
		}
		p.pol.Groups[m.key.s] = names(sels)
	}
	return nil
}

func (p *parser) tagOwners(v *hujson.Value) error {
	ms, err := p.members(v, `"tagOwners"`)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if err := p.defName(m.key, SelTag, "tag:", "tagOwners lists tags (tag:NAME), not"); err != nil {
			return err
		}
		sels, err := p.selectors(m.val, "owners of "+m.key.s, "", userOrGroup, "tag owners are users or groups, not %s")
		if err != nil {
			return err
		}
		p.pol.TagOwners[wire.Tag(m.key.s)] = names(sels)
	}
	return nil
}

func (p *parser) services(v *hujson.Value) error {
	ms, err := p.members(v, `"services"`)
	if err != nil {
		return err
	}
	for _, m := range ms {
		name := m.key.s
		if err := p.defName(m.key, SelService, "svc:", "service names look like svc:NAME, not"); err != nil {
			return err
		}
		what := "service " + name
		f, err := p.fields(m.val, what, "tags", "ports")
		if err != nil {
			return err
		}
		svc := &Service{Name: name, Pos: p.pos(m.key.at(0))}
		if f["tags"] == nil {
			return p.errAt(m.val.StartOffset, "%s has no \"tags\"", what)
		}
		tags, err := p.selectors(f["tags"], "tags of "+name, what+" has no tags", []SelectorKind{SelTag}, "a service is provided by tags (tag:NAME), not %s")
		if err != nil {
			return err
		}
		for _, t := range tags {
			svc.Tags = append(svc.Tags, wire.Tag(t.Name))
		}
		if f["ports"] == nil {
			return p.errAt(m.val.StartOffset, "%s has no \"ports\"", what)
		}
		ports, err := p.strings(f["ports"], "ports of "+name, what+" has no ports")
		if err != nil {
			return err
		}
		for _, s := range ports {
			specs, e := parsePortSpec(s.s, 0)
			if e == nil {
				e = addSpecs(&svc.Ports, specs, 0)
			}
			if e != nil {
				return p.partErr(s, e)
			}
		}
		p.pol.Services[name] = svc
	}
	return nil
}

func (p *parser) rules(v *hujson.Value) error {
	els, err := p.array(v, `"rules"`)
	if err != nil {
		return err
	}
	byID := make(map[string]*Rule, len(els))
	keys := make(map[string]string, len(els))
	for i := range els {
		el := &els[i]
		f, err := p.fields(el, "rule", "src", "srcPosture", "dst")
		if err != nil {
			return err
		}
		r := &Rule{Pos: p.pos(el.StartOffset)}
		if f["src"] == nil {
			return p.errAt(el.StartOffset, `rule has no "src"`)
		}
		if r.Src, err = p.selectors(f["src"], `"src"`, `empty "src": a rule needs at least one source`, srcKinds, ""); err != nil {
			return err
		}
		if sp := f["srcPosture"]; sp != nil {
			if r.SrcPosture, err = p.postureNames(sp); err != nil {
				return err
			}
		}
		if f["dst"] == nil {
			return p.errAt(el.StartOffset, `rule has no "dst"`)
		}
		if r.Dst, err = p.targets(f["dst"], `"dst"`, `empty "dst": a rule needs at least one destination`); err != nil {
			return err
		}
		key := ruleKey(r.Src, r.SrcPosture, r.Dst)
		r.ID = ruleID(key)
		if o := byID[r.ID]; o != nil {
			if keys[r.ID] == key {
				return p.errAt(el.StartOffset, "duplicate rule: the rule at line %d has the same sources and destinations", o.Pos.Line)
			}
			return p.errAt(el.StartOffset, "rule ID %s collides with the rule at line %d: change either rule", r.ID, o.Pos.Line)
		}
		byID[r.ID], keys[r.ID] = r, key
		p.pol.Rules = append(p.pol.Rules, r)
	}
	return nil
}

// ruleKey is the canonical form of a rule: its sources, source postures
// and destinations, each sorted, so the order they are written in does
// not matter. A service destination is its name: editing the service's
// ports changes what the rule admits but not its identity. A rule without
// postures keeps the key (and ID) it had before postures existed.
func ruleKey(src []Selector, post []string, dst []Target) string {
	ss := make([]string, len(src))
	for i, s := range src {
		ss[i] = s.Name
	}
	ds := make([]string, len(dst))
	for i, d := range dst {
		ds[i] = d.String()
	}
	slices.Sort(ss)
	slices.Sort(ds)
	key := "src\x00" + strings.Join(ss, "\x00") + "\x01dst\x00" + strings.Join(ds, "\x00")
	if len(post) > 0 {
		ps := slices.Sorted(slices.Values(post))
		key += "\x01posture\x00" + strings.Join(ps, "\x00")
	}
	return key
}

// ruleID is "r-" and the first 10 hex digits of the key's SHA-256.
func ruleID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "r-" + hex.EncodeToString(sum[:5])
}

func (p *parser) access(v *hujson.Value) error {
	els, err := p.array(v, `"access"`)
	if err != nil {
		return err
	}
	for i := range els {
		el := &els[i]
		f, err := p.fields(el, "access rule", "src", "srcPosture", "dst", "approvers", "autoApprove", "maxDuration")
		if err != nil {
			return err
		}
		r := &AccessRule{Pos: p.pos(el.StartOffset)}
		if f["src"] == nil {
			return p.errAt(el.StartOffset, `access rule has no "src"`)
		}
		if r.Src, err = p.selectors(f["src"], `"src"`, `empty "src": an access rule needs at least one source`, allKinds, noQuarantineAccess); err != nil {
			return err
		}
		if sp := f["srcPosture"]; sp != nil {
			if r.SrcPosture, err = p.postureNames(sp); err != nil {
				return err
			}
		}
		if f["dst"] == nil {
			return p.errAt(el.StartOffset, `access rule has no "dst"`)
		}
		if r.Dst, err = p.targets(f["dst"], `"dst"`, `empty "dst": an access rule needs at least one destination`); err != nil {
			return err
		}
		for _, t := range r.Dst {
			if t.Sel.Kind == SelQuarantined {
				return &Error{Pos: t.Pos, Msg: fmt.Sprintf(noQuarantineAccess, q(t.String()))}
			}
		}
		if a := f["autoApprove"]; a != nil {
			if k := a.Value.Kind(); k != 't' && k != 'f' {
				return p.errAt(a.StartOffset, `"autoApprove" must be true or false, not %s`, kindName(a.Value))
			}
			r.AutoApprove = a.Value.Kind() == 't'
		}
		a := f["approvers"]
		if a != nil {
			sels, err := p.selectors(a, `"approvers"`, "", userOrGroup, "approvers are users or groups, not %s")
			if err != nil {
				return err
			}
			if len(sels) > 0 {
				r.Approvers = names(sels)
			}
		}
		if len(r.Approvers) == 0 && !r.AutoApprove {
			off := el.StartOffset
			if a != nil {
				off = a.StartOffset
			}
			return p.errAt(off, `access rule needs "approvers" or "autoApprove": true`)
		}
		d := f["maxDuration"]
		if d == nil {
			return p.errAt(el.StartOffset, `access rule has no "maxDuration"`)
		}
		s, err := p.string(d, `"maxDuration"`)
		if err != nil {
			return err
		}
		dur, err := time.ParseDuration(s.s)
		switch {
		case err != nil:
			return p.errAt(s.at(0), "invalid maxDuration %s: want a duration like 30m or 1h", q(s.s))
		case dur <= 0:
			return p.errAt(s.at(0), "maxDuration %s must be above zero", q(s.s))
		case dur > MaxDuration:
			return p.errAt(s.at(0), "maxDuration %s is over the limit of 30 days (720h)", q(s.s))
		}
		r.MaxDuration = dur
		p.pol.Access = append(p.pol.Access, r)
	}
	return nil
}

func (p *parser) tests(v *hujson.Value) error {
	els, err := p.array(v, `"tests"`)
	if err != nil {
		return err
	}
	for i := range els {
		el := &els[i]
		f, err := p.fields(el, "test", "src", "posture", "quarantined", "accept", "deny")
		if err != nil {
			return err
		}
		t := &Test{Pos: p.pos(el.StartOffset)}
		if f["src"] == nil {
			return p.errAt(el.StartOffset, `test has no "src"`)
		}
		s, err := p.string(f["src"], `test "src"`)
		if err != nil {
			return err
		}
		if t.Src, err = p.selector(s, srcKinds, ""); err != nil {
			return err
		}
		if v := f["posture"]; v != nil {
			if t.Posture, err = p.testPosture(v); err != nil {
				return err
			}
		}
		if v := f["quarantined"]; v != nil {
			if k := v.Value.Kind(); k != 't' && k != 'f' {
				return p.errAt(v.StartOffset, `"quarantined" must be true or false, not %s`, kindName(v.Value))
			}
			t.Quarantined = v.Value.Kind() == 't'
		}
		if t.Src.Kind == SelGroup && len(p.pol.Groups[t.Src.Name]) == 0 {
			return p.errAt(s.at(0), "%s has no members to test with", q(t.Src.Name))
		}
		if a := f["accept"]; a != nil {
			if t.Accept, err = p.targets(a, `"accept"`, ""); err != nil {
				return err
			}
		}
		if d := f["deny"]; d != nil {
			if t.Deny, err = p.targets(d, `"deny"`, ""); err != nil {
				return err
			}
		}
		if len(t.Accept)+len(t.Deny) == 0 {
			return p.errAt(el.StartOffset, `test checks nothing: give "accept" or "deny" targets`)
		}
		p.pol.Tests = append(p.pol.Tests, t)
	}
	return nil
}
