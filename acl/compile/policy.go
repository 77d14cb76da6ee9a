package compile

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

// compiled is a policy turned into inverted indexes: from what a node is
// (its tags, its owner, its name, whether it is quarantined) to the rules
// whose sources select it, the targets that select it and the services it
// provides. Evaluating a node against the whole policy is then a handful
// of map lookups, plus the posture conditions when rules require postures.
// It is immutable once built.
type compiled struct {
	rules   []crule
	targets []ctarget
	svcs    []csvc
	svcIdx  map[string]int32

	// Rule indices whose sources select a node with the key.
	srcByTag  map[wire.Tag][]int32
	srcByUser map[string][]int32 // users and members of groups
	srcByName map[string][]int32
	// Target indices selecting a node with the key.
	dstByTag  map[wire.Tag][]int32
	dstByUser map[string][]int32
	dstByName map[string][]int32
	// Service indices a node with the tag provides.
	svcByTag map[wire.Tag][]int32
	// Rule and target indices selecting quarantined nodes (which
	// nothing else selects).
	srcQuar []int32
	dstQuar []int32

	// posts are the policy's postures, sorted by name; postIdx finds them.
	posts   []cposture
	postIdx map[string]int32
	// gated is set when some rule requires postures of its sources.
	gated bool
}

// cposture is one posture: a node satisfies it when every condition holds.
type cposture struct {
	name  string
	conds []policy.Condition
}

type crule struct {
	id string
	// post are the postures (indices into posts, sorted) a node must
	// satisfy for the rule's sources to select it.
	post []int32
	// targets are the indices of the rule's targets that admit anything,
	// in policy order.
	targets []int32
}

type ctarget struct {
	rule int32
	// specs are the target's valid port specs; never empty.
	specs []policy.PortSpec
	// rules are what the target becomes at every node it selects: one
	// filter rule, or one per protocol when the protocols have different
	// ports. IDs are unique across the policy.
	rules []wire.FilterRule
}

type csvc struct {
	name string
	tags []wire.Tag
}

// member is what one node is to a compiled policy. Every slice is sorted
// and free of duplicates.
type member struct {
	src  []int32 // rules whose sources select the node
	dst  []int32 // targets selecting the node
	svcs []int32 // services the node provides
	post []int32 // postures the node satisfies
	quar bool    // the node is quarantined
}

func (m *member) equal(o *member) bool {
	return slices.Equal(m.src, o.src) && slices.Equal(m.dst, o.dst) && slices.Equal(m.svcs, o.svcs) &&
		slices.Equal(m.post, o.post) && m.quar == o.quar
}

// compilePolicy indexes p. A nil p compiles to a policy that selects
// nothing.
func compilePolicy(p *policy.Policy) *compiled {
	cp := &compiled{
		svcIdx:    map[string]int32{},
		srcByTag:  map[wire.Tag][]int32{},
		srcByUser: map[string][]int32{},
		srcByName: map[string][]int32{},
		dstByTag:  map[wire.Tag][]int32{},
		dstByUser: map[string][]int32{},
		dstByName: map[string][]int32{},
		svcByTag:  map[wire.Tag][]int32{},
		postIdx:   map[string]int32{},
	}
	if p == nil {
		return cp
	}
	postNames := make([]string, 0, len(p.Postures))
	for name, pos := range p.Postures {
		if pos != nil {
			postNames = append(postNames, name)
		}
	}
	slices.Sort(postNames)
	for _, name := range postNames {
		cp.postIdx[name] = int32(len(cp.posts))
		cp.posts = append(cp.posts, cposture{name: name, conds: p.Postures[name].Conds})
	}
	names := make([]string, 0, len(p.Services))
	for name, s := range p.Services {
		if s != nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		i := int32(len(cp.svcs))
		tags := uniqueTags(p.Services[name].Tags)
		cp.svcs = append(cp.svcs, csvc{name: name, tags: tags})
		cp.svcIdx[name] = i
		for _, t := range tags {
			cp.svcByTag[t] = append(cp.svcByTag[t], i)
		}
	}

	usedIDs := map[string]bool{}
	for _, r := range p.Rules {
		if r == nil {
			continue
		}
		ri := int32(len(cp.rules))
		id := r.ID
		if id == "" || strings.HasPrefix(id, grantPrefix) {
			// Grant IDs have their own namespace; a rule without an ID
			// gets one from its content, as the parser would give it.
			id = "r-" + hash(ruleText(r))[:10]
		}
		id = uniqueID(usedIDs, id)
		cr := crule{id: id}
		post, ok := cp.postures(r.SrcPosture)
		cr.post = post
		cp.gated = cp.gated || len(post) > 0
		for _, sel := range r.Src {
			if !ok {
				break // an undefined posture: the sources select nobody
			}
			if isQuarantine(sel) {
				cp.srcQuar = appendIdx(cp.srcQuar, ri)
				continue
			}
			tags, users, names := cp.expand(p, sel, false)
			for _, t := range tags {
				cp.srcByTag[t] = appendIdx(cp.srcByTag[t], ri)
			}
			for _, u := range users {
				cp.srcByUser[u] = appendIdx(cp.srcByUser[u], ri)
			}
			for _, n := range names {
				cp.srcByName[n] = appendIdx(cp.srcByName[n], ri)
			}
		}
		seen := map[string]string{} // target ID -> its text, within the rule
		for _, t := range r.Dst {
			specs := validSpecs(t.Ports)
			if len(specs) == 0 {
				continue // admits nothing
			}
			text := targetText(t.Sel.Name, specs)
			tid := id + "/" + hash(text)[:8]
			if prev, ok := seen[tid]; ok && prev == text {
				continue // the same target twice admits nothing more
			}
			tid = uniqueID(usedIDs, tid)
			seen[tid] = text
			ti := int32(len(cp.targets))
			cp.targets = append(cp.targets, ctarget{rule: ri, specs: specs, rules: render(tid, specs, time.Time{})})
			cr.targets = append(cr.targets, ti)
			if isQuarantine(t.Sel) {
				cp.dstQuar = appendIdx(cp.dstQuar, ti)
				continue
			}
			tags, users, names := cp.expand(p, t.Sel, true)
			for _, tag := range tags {
				cp.dstByTag[tag] = appendIdx(cp.dstByTag[tag], ti)
			}
			for _, u := range users {
				cp.dstByUser[u] = appendIdx(cp.dstByUser[u], ti)
			}
			for _, n := range names {
				cp.dstByName[n] = appendIdx(cp.dstByName[n], ti)
			}
		}
		cp.rules = append(cp.rules, cr)
	}
	return cp
}

// expand says which node properties sel matches: nodes carrying any of
// tags, untagged nodes owned by any of users, or nodes named any of names.
// A target selects by tag or service only. This is policy.Policy.Selects
// and TargetSelects turned inside out.
func (cp *compiled) expand(p *policy.Policy, sel policy.Selector, target bool) (tags []wire.Tag, users, names []string) {
	if sel.Name == "" || (target && sel.Kind != policy.SelTag && sel.Kind != policy.SelService) {
		return nil, nil, nil
	}
	switch sel.Kind {
	case policy.SelTag:
		return []wire.Tag{wire.Tag(sel.Name)}, nil, nil
	case policy.SelService:
		if i, ok := cp.svcIdx[sel.Name]; ok {
			return cp.svcs[i].tags, nil, nil
		}
	case policy.SelGroup:
		for _, u := range p.Groups[sel.Name] {
			if u != "" {
				users = append(users, u)
			}
		}
		return nil, users, nil
	case policy.SelUser:
		return nil, []string{sel.Name}, nil
	case policy.SelNode:
		if n, ok := strings.CutPrefix(sel.Name, "node:"); ok && n != "" {
			return nil, nil, []string{n}
		}
	}
	return nil, nil, nil
}

// isQuarantine reports whether sel is status:quarantined.
func isQuarantine(sel policy.Selector) bool {
	return sel.Kind == policy.SelQuarantined && sel.Name == policy.QuarantinedName
}

// postures resolves posture names to sorted indices; false if one is not
// defined (then nothing satisfies them).
func (cp *compiled) postures(names []string) ([]int32, bool) {
	var out []int32
	for _, n := range names {
		i, ok := cp.postIdx[n]
		if !ok {
			return nil, false
		}
		out = append(out, i)
	}
	return sortIdx(out), true
}

// satisfied returns the postures attrs satisfy, sorted.
func (cp *compiled) satisfied(attrs map[string]string) []int32 {
	if len(attrs) == 0 {
		return nil // no attribute, no condition holds
	}
	var out []int32
next:
	for i := range cp.posts {
		for _, c := range cp.posts[i].conds {
			if !c.Holds(attrs) {
				continue next
			}
		}
		if len(cp.posts[i].conds) > 0 {
			out = append(out, int32(i))
		}
	}
	return out
}

// subset reports whether every element of a (sorted) is in b (sorted).
func subset(a, b []int32) bool {
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j == len(b) || b[j] != x {
			return false
		}
	}
	return true
}

// member evaluates n against the policy. A quarantined node is selected
// only by status:quarantined sources and targets, and provides no
// service; a rule requiring postures selects only sources that satisfy
// them all.
func (cp *compiled) member(n *Node) member {
	var m member
	if len(cp.posts) > 0 {
		m.post = cp.satisfied(n.Posture)
	}
	if n.Quarantined {
		m.quar = true
		m.src = slices.Clone(cp.srcQuar)
		m.dst = slices.Clone(cp.dstQuar)
		m.src = cp.gate(m.src, m.post)
		return m
	}
	for _, t := range n.Tags {
		m.src = append(m.src, cp.srcByTag[t]...)
		m.dst = append(m.dst, cp.dstByTag[t]...)
		m.svcs = append(m.svcs, cp.svcByTag[t]...)
	}
	if len(n.Tags) == 0 && n.Owner != "" {
		// Only untagged nodes have an owner for policy purposes.
		m.src = append(m.src, cp.srcByUser[n.Owner]...)
		m.dst = append(m.dst, cp.dstByUser[n.Owner]...)
	}
	if n.Name != "" {
		m.src = append(m.src, cp.srcByName[n.Name]...)
		m.dst = append(m.dst, cp.dstByName[n.Name]...)
	}
	m.src = cp.gate(sortIdx(m.src), m.post)
	m.dst = sortIdx(m.dst)
	m.svcs = sortIdx(m.svcs)
	return m
}

// gate drops from src the rules whose postures post does not include.
func (cp *compiled) gate(src, post []int32) []int32 {
	if !cp.gated {
		return src
	}
	out := src[:0]
	for _, r := range src {
		if subset(cp.rules[r].post, post) {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func sortIdx(s []int32) []int32 {
	if len(s) == 0 {
		return nil
	}
	slices.Sort(s)
	return slices.Clip(slices.Compact(s))
}

// appendIdx appends i unless it is already last; indices are added in
// increasing order, so this keeps the lists free of duplicates.
func appendIdx(s []int32, i int32) []int32 {
	if len(s) > 0 && s[len(s)-1] == i {
		return s
	}
	return append(s, i)
}

func uniqueTags(tags []wire.Tag) []wire.Tag {
	out := slices.Clone(tags)
	slices.Sort(out)
	return slices.Compact(out)
}

// uniqueID returns id, or id with a "~N" suffix if it is taken, and marks
// the result taken. Only a policy with two identical rules needs this.
func uniqueID(used map[string]bool, id string) string {
	cand := id
	for k := 2; used[cand]; k++ {
		cand = id + "~" + strconv.Itoa(k)
	}
	used[cand] = true
	return cand
}

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func ruleText(r *policy.Rule) string {
	var b strings.Builder
	for _, s := range r.Src {
		fmt.Fprintf(&b, "%d:%s ", s.Kind, s.Name)
	}
	for _, s := range r.SrcPosture {
		fmt.Fprintf(&b, "%s ", s)
	}
	b.WriteString("->")
	for _, t := range r.Dst {
		fmt.Fprintf(&b, " %d:%s", t.Sel.Kind, targetText(t.Sel.Name, t.Ports))
	}
	return b.String()
}

// targetText is the canonical text of a target: "svc:db:5432/tcp,icmp".
func targetText(sel string, specs []policy.PortSpec) string {
	var b strings.Builder
	b.WriteString(sel)
	for i, s := range specs {
		if i == 0 {
			b.WriteByte(':')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(specText(s))
	}
	return b.String()
}

func specText(s policy.PortSpec) string {
	switch s.Proto {
	case wire.ProtoICMP:
		return "icmp"
	case wire.ProtoTCP:
		return rangeText(s.Ports) + "/tcp"
	case wire.ProtoUDP:
		return rangeText(s.Ports) + "/udp"
	}
	return "proto" + strconv.Itoa(int(s.Proto))
}

func rangeText(r wire.PortRange) string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return strconv.Itoa(int(r.First)) + "-" + strconv.Itoa(int(r.Last))
}

// validSpecs returns the specs that admit something: TCP and UDP with a
// range within 1-65535, and ICMP. Anything else is dropped, never widened.
func validSpecs(specs []policy.PortSpec) []policy.PortSpec {
	var out []policy.PortSpec
	for _, s := range specs {
		switch s.Proto {
		case wire.ProtoTCP, wire.ProtoUDP:
			if s.Ports.First == 0 || s.Ports.First > s.Ports.Last {
				continue
			}
		case wire.ProtoICMP:
			s.Ports = wire.PortRange{}
		default:
			continue
		}
		out = append(out, s)
	}
	return out
}

// render turns port specs into filter rules named id. TCP and UDP share one
// rule when they have the same ports; otherwise each protocol gets its own
// rule ("id/tcp", "id/udp", "id/icmp"), since one rule with both port sets
// would admit TCP on the UDP ports and the other way round. ICMP rides
// along in a single rule (the filter ignores ports for ICMP); an ICMP-only
// rule has no ports. Invalid specs are ignored; nothing valid, no rules.
func render(id string, specs []policy.PortSpec, expires time.Time) []wire.FilterRule {
	var tcp, udp []wire.PortRange
	icmp := false
	for _, s := range validSpecs(specs) {
		switch s.Proto {
		case wire.ProtoTCP:
			tcp = append(tcp, s.Ports)
		case wire.ProtoUDP:
			udp = append(udp, s.Ports)
		case wire.ProtoICMP:
			icmp = true
		}
	}
	tcp, udp = mergeRanges(tcp), mergeRanges(udp)
	icmpProtos := []wire.Proto{wire.ProtoICMP, wire.ProtoICMPv6}
	rule := func(id string, protos []wire.Proto, ports []wire.PortRange) wire.FilterRule {
		return wire.FilterRule{ID: id, Protocols: protos, Ports: ports, Expires: expires}
	}
	switch {
	case len(tcp) == 0 && len(udp) == 0 && !icmp:
		return nil
	case len(tcp) > 0 && len(udp) > 0 && !slices.Equal(tcp, udp):
		out := []wire.FilterRule{
			rule(id+"/tcp", []wire.Proto{wire.ProtoTCP}, tcp),
			rule(id+"/udp", []wire.Proto{wire.ProtoUDP}, udp),
		}
		if icmp {
			out = append(out, rule(id+"/icmp", icmpProtos, nil))
		}
		return out
	}
	var protos []wire.Proto
	ports := tcp
	if icmp {
		protos = append(protos, wire.ProtoICMP)
	}
	if len(tcp) > 0 {
		protos = append(protos, wire.ProtoTCP)
	}
	if len(udp) > 0 {
		protos = append(protos, wire.ProtoUDP)
		ports = udp
	}
	if icmp {
		protos = append(protos, wire.ProtoICMPv6)
	}
	return []wire.FilterRule{rule(id, protos, ports)}
}

// mergeRanges sorts ranges and joins those that overlap or touch.
func mergeRanges(in []wire.PortRange) []wire.PortRange {
	if len(in) == 0 {
		return nil
	}
	rs := slices.Clone(in)
	slices.SortFunc(rs, func(a, b wire.PortRange) int {
		if a.First != b.First {
			return int(a.First) - int(b.First)
		}
		return int(a.Last) - int(b.Last)
	})
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if uint32(r.First) <= uint32(last.Last)+1 {
			last.Last = max(last.Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

func ruleEqual(a, b *wire.FilterRule) bool {
	return a.ID == b.ID && slices.Equal(a.Protocols, b.Protocols) && slices.Equal(a.Ports, b.Ports) &&
		slices.Equal(a.Sources, b.Sources) && a.Expires.Equal(b.Expires)
}
