package compile

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

// A realistic large network: 200 tags in 20 applications of 10 tags,
// 10,000 nodes carrying one or two tags of one application (one in ten
// untagged, owned by one of 200 users), 50 services and 1,000 rules with
// one to three sources and one to three targets, mostly within an
// application, some across (shared infrastructure, admins by group).
// Views hold a few hundred peers each: far from all-to-all.

const (
	benchApps    = 20
	benchTagsPer = 10
	benchNodes   = 10_000
	benchRules   = 1_000
	benchSvcs    = 50
	benchUsers   = 200
	benchGroups  = 20
)

func benchTag(app, i int) string { return fmt.Sprintf("tag:a%d-t%d", app, i) }

func benchPolicy(seed uint64) *policy.Policy {
	r := rand.New(rand.NewPCG(seed, 1))
	p := &policy.Policy{Groups: map[string][]string{}, Services: map[string]*policy.Service{}}
	for g := range benchGroups {
		var members []string
		for range 10 {
			members = append(members, fmt.Sprintf("user%d@example.com", r.IntN(benchUsers)))
		}
		p.Groups[fmt.Sprintf("group:g%d", g)] = members
	}
	svcApp := map[string]int{}
	var svcNames []string
	for s := range benchSvcs {
		app := s % benchApps
		name := fmt.Sprintf("svc:s%d", s)
		svc := &policy.Service{Name: name, Ports: []policy.PortSpec{tcp(uint16(8000+s), uint16(8000+s))}}
		for range 1 + r.IntN(2) {
			svc.Tags = append(svc.Tags, wire.Tag(benchTag(app, r.IntN(benchTagsPer))))
		}
		if r.IntN(3) == 0 {
			svc.Ports = append(svc.Ports, udp(9000, 9000))
		}
		p.Services[name] = svc
		svcApp[name] = app
		svcNames = append(svcNames, name)
	}
	for i := range benchRules {
		app := r.IntN(benchApps)
		rule := &policy.Rule{ID: fmt.Sprintf("r-%010x", i)}
		for range 1 + r.IntN(3) {
			srcApp := app
			if r.IntN(20) == 0 {
				srcApp = r.IntN(benchApps) // across applications
			}
			switch k := r.IntN(10); {
			case k == 0:
				rule.Src = append(rule.Src, sel(fmt.Sprintf("group:g%d", r.IntN(benchGroups))))
			case k == 1:
				rule.Src = append(rule.Src, sel(svcNames[srcApp+benchApps*r.IntN(benchSvcs/benchApps)]))
			default:
				rule.Src = append(rule.Src, sel(benchTag(srcApp, r.IntN(benchTagsPer))))
			}
		}
		for range 1 + r.IntN(3) {
			if r.IntN(2) == 0 {
				name := svcNames[app%benchSvcs]
				if r.IntN(2) == 0 {
					name = svcNames[r.IntN(len(svcNames))]
					for svcApp[name] != app && r.IntN(4) != 0 {
						name = svcNames[r.IntN(len(svcNames))]
					}
				}
				rule.Dst = append(rule.Dst, policy.Target{Sel: sel(name), Ports: p.Services[name].Ports})
				continue
			}
			port := uint16(1 + r.IntN(1000))
			rule.Dst = append(rule.Dst, tagTarget(benchTag(app, r.IntN(benchTagsPer)), tcp(port, port+uint16(r.IntN(3))), icmp))
		}
		p.Rules = append(p.Rules, rule)
	}
	return p
}

func benchNode(r *rand.Rand, i int) Node {
	n := Node{ID: wire.NodeID(fmt.Sprintf("node-%08x", r.Uint32())), Name: fmt.Sprintf("host-%d", i)}
	if r.IntN(10) == 0 {
		n.Owner = fmt.Sprintf("user%d@example.com", r.IntN(benchUsers))
		return n
	}
	app := r.IntN(benchApps)
	for range 1 + r.IntN(2) {
		n.Tags = append(n.Tags, wire.Tag(benchTag(app, r.IntN(benchTagsPer))))
	}
	return n
}

func benchInventory() []Node {
	r := rand.New(rand.NewPCG(7, 7))
	nodes := make([]Node, benchNodes)
	for i := range nodes {
		nodes[i] = benchNode(r, i)
	}
	return nodes
}

var benchState struct {
	p     *policy.Policy
	nodes []Node
	c     *Compiler
}

// benchCompiler returns a compiled 10k-node state, shared by benchmarks
// that leave it as they found it.
func benchCompiler(b *testing.B) (*Compiler, []Node) {
	b.Helper()
	if benchState.c == nil {
		benchState.p = benchPolicy(1)
		benchState.nodes = benchInventory()
		benchState.c = compileAll(benchState.p, benchState.nodes, nil)
	}
	return benchState.c, benchState.nodes
}

func BenchmarkFullCompile10kNodes1kRules(b *testing.B) {
	p := benchPolicy(1)
	nodes := benchInventory()
	b.Run("index", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c := New(p)
			for _, n := range nodes {
				c.Upsert(n)
			}
		}
	})
	b.Run("stateMemory", func(b *testing.B) {
		// What a compiled 10k-node state keeps on the heap.
		var m0, m1 runtime.MemStats
		for b.Loop() {
			runtime.GC()
			runtime.ReadMemStats(&m0)
			c := New(p)
			for _, n := range nodes {
				c.Upsert(n)
			}
			runtime.GC()
			runtime.ReadMemStats(&m1)
			runtime.KeepAlive(c)
		}
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/(1<<20), "MiB-live")
	})
	b.Run("index+allViews", func(b *testing.B) {
		b.ReportAllocs()
		var peers, rules int
		for b.Loop() {
			c := New(p)
			for _, n := range nodes {
				c.Upsert(n)
			}
			peers, rules = 0, 0
			for _, n := range nodes {
				v, _ := c.View(n.ID)
				peers += len(v.Peers)
				rules += len(v.Rules)
			}
		}
		b.ReportMetric(float64(peers)/float64(len(nodes)), "peers/view")
		b.ReportMetric(float64(rules)/float64(len(nodes)), "rules/view")
	})
}

func BenchmarkJoinAt10kNodes(b *testing.B) {
	c, _ := benchCompiler(b)
	r := rand.New(rand.NewPCG(99, 99))
	b.ReportAllocs()
	changed := 0
	for b.Loop() {
		n := benchNode(r, benchNodes+1)
		changed += len(c.Upsert(n))
		b.StopTimer()
		c.Remove(n.ID)
		b.StartTimer()
	}
	b.ReportMetric(float64(changed)/float64(b.N), "changed/op")
}

func BenchmarkLeaveAt10kNodes(b *testing.B) {
	c, _ := benchCompiler(b)
	r := rand.New(rand.NewPCG(98, 98))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		n := benchNode(r, benchNodes+1)
		c.Upsert(n)
		b.StartTimer()
		c.Remove(n.ID)
	}
}

// BenchmarkRetagAt10kNodes changes an existing node's tags back and forth:
// the path that compares entries before and after.
func BenchmarkRetagAt10kNodes(b *testing.B) {
	c, nodes := benchCompiler(b)
	n := nodes[len(nodes)/2]
	alt := n
	alt.Tags = []wire.Tag{wire.Tag(benchTag(3, 4))}
	b.ReportAllocs()
	changed, i := 0, 0
	for b.Loop() {
		if i%2 == 0 {
			changed += len(c.Upsert(alt))
		} else {
			changed += len(c.Upsert(n))
		}
		i++
	}
	c.Upsert(n)
	b.ReportMetric(float64(changed)/float64(b.N), "changed/op")
}

func BenchmarkViewAt10kNodes(b *testing.B) {
	c, nodes := benchCompiler(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.View(nodes[i%len(nodes)].ID)
		i++
	}
}

func BenchmarkPeerAt10kNodes(b *testing.B) {
	c, nodes := benchCompiler(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Peer(nodes[i%len(nodes)].ID, nodes[(i*7919)%len(nodes)].ID)
		i++
	}
}

// BenchmarkSetPolicy10kNodes swaps between two policies that differ in one
// rule: every view is compared, few change.
func BenchmarkSetPolicy10kNodes(b *testing.B) {
	c, _ := benchCompiler(b)
	p1 := benchState.p
	p2 := *p1
	p2.Rules = append([]*policy.Rule{rule("r-extra", []string{benchTag(0, 0)}, tagTarget(benchTag(0, 1), tcp(22, 22)))}, p1.Rules...)
	b.ReportAllocs()
	changed, i := 0, 0
	for b.Loop() {
		if i%2 == 0 {
			changed += len(c.SetPolicy(&p2))
		} else {
			changed += len(c.SetPolicy(p1))
		}
		i++
	}
	c.SetPolicy(p1)
	b.ReportMetric(float64(changed)/float64(b.N), "changed/op")
}

func BenchmarkPairs10kNodes(b *testing.B) {
	c, _ := benchCompiler(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n = len(c.Pairs())
	}
	b.ReportMetric(float64(n), "pairs")
}

// BenchmarkDiffPolicy10kNodes reports the pairs one added rule opens.
func BenchmarkDiffPolicy10kNodes(b *testing.B) {
	c, _ := benchCompiler(b)
	p2 := *benchState.p
	p2.Rules = append([]*policy.Rule{rule("r-extra", []string{benchTag(0, 0)}, tagTarget(benchTag(0, 1), tcp(22, 22)))}, p2.Rules...)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		gained, lost := c.DiffPolicy(&p2)
		n = len(gained) + len(lost)
	}
	b.ReportMetric(float64(n), "pairs")
}
