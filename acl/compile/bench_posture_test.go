package compile

import (
	"testing"

	"github.com/latchnet/latch/acl/policy"
)

// BenchmarkQuarantineAt10kNodes quarantines a node and lets it go again:
// the node loses every peer, and gets them back.
func BenchmarkQuarantineAt10kNodes(b *testing.B) {
	c, nodes := benchCompiler(b)
	n := nodes[len(nodes)/3]
	q := n
	q.Quarantined = true
	b.ReportAllocs()
	changed, i := 0, 0
	for b.Loop() {
		if i%2 == 0 {
			changed += len(c.Upsert(q))
		} else {
			changed += len(c.Upsert(n))
		}
		i++
	}
	c.Upsert(n)
	b.ReportMetric(float64(changed)/float64(b.N), "changed/op")
}

// BenchmarkPostureChangeAt10kNodes: one rule in ten requires a posture;
// every node reports one that satisfies it, and one node's posture flips
// between satisfying and not.
func BenchmarkPostureChangeAt10kNodes(b *testing.B) {
	p := benchPolicy(1)
	p.Postures = map[string]*policy.Posture{
		"posture:ok": {Name: "posture:ok", Conds: []policy.Condition{
			{Attr: "os", Op: policy.OpEq, Value: "linux"},
			{Attr: "agent_version", Op: policy.OpGe, Value: "0.4"},
		}},
	}
	for i, r := range p.Rules {
		if i%10 == 0 {
			r2 := *r
			r2.SrcPosture = []string{"posture:ok"}
			p.Rules[i] = &r2
		}
	}
	good := map[string]string{"os": "linux", "agent_version": "0.4.2"}
	bad := map[string]string{"os": "linux", "agent_version": "0.3"}
	nodes := benchInventory()
	for i := range nodes {
		nodes[i].Posture = good
	}
	c := compileAll(p, nodes, nil)
	n := nodes[len(nodes)/2]
	alt := n
	alt.Posture = bad
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
	b.ReportMetric(float64(changed)/float64(b.N), "changed/op")
}
