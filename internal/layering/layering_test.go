// Package layering holds the test that keeps Latch's dependency direction
// (DESIGN.md, "Layout") true as the code grows.
package layering

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/latchnet/latch"

// rule says which of our packages a package may not import. A package is
// matched by prefix: "acl" covers acl and everything below it.
type rule struct {
	from      string
	forbidden []string
	// onlyAllowed, when set, lists the only prefixes of ours that from may
	// import (besides itself).
	onlyAllowed []string
}

var rules = []rule{
	{from: "wire", onlyAllowed: []string{"wire", "acl"}},
	{from: "acl", onlyAllowed: []string{"acl", "wire"}},
	{from: "overlay", forbidden: []string{"agent", "coordinator", "cmd", "e2e"}},
	{from: "agent", forbidden: []string{"coordinator", "cmd", "e2e"}},
	{from: "coordinator", forbidden: []string{"agent", "overlay", "cmd", "e2e"}},
}

func hasPrefix(pkg, prefix string) bool {
	return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}

// imports lists, for every package of the module, the module's packages it
// imports directly, test files included.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-f",
		`{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`,
		"./...")
	cmd.Dir = "../.." // the module root
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		pkg := strings.TrimPrefix(strings.TrimPrefix(f[0], module), "/")
		m[pkg] = nil
		for _, imp := range f[1:] {
			if rest, ok := strings.CutPrefix(imp, module+"/"); ok {
				m[pkg] = append(m[pkg], rest)
			}
		}
	}
	return m
}

// violations returns one line for every edge of graph that breaks a rule.
func violations(graph map[string][]string) []string {
	var out []string
	for pkg, deps := range graph {
		for _, r := range rules {
			if !hasPrefix(pkg, r.from) {
				continue
			}
			for _, dep := range deps {
				for _, f := range r.forbidden {
					if hasPrefix(dep, f) {
						out = append(out, pkg+" imports "+dep+": "+r.from+" must not import "+f)
					}
				}
				if r.onlyAllowed != nil && !slices.ContainsFunc(r.onlyAllowed, func(a string) bool { return hasPrefix(dep, a) }) {
					out = append(out, pkg+" imports "+dep+": "+r.from+" may import only "+strings.Join(r.onlyAllowed, ", ")+" of ours")
				}
			}
		}
	}
	return out
}

func TestDependencyDirection(t *testing.T) {
	graph := imports(t)
	if len(graph) < 2 {
		t.Fatalf("go list found %d packages; the test cannot check anything", len(graph))
	}
	for _, v := range violations(graph) {
		t.Errorf("%s (DESIGN.md, Layout)", v)
	}
}

// TestRuleCatchesViolation proves the checker fails on forbidden edges, so
// TestDependencyDirection cannot pass vacuously.
func TestRuleCatchesViolation(t *testing.T) {
	bad := map[string][]string{"coordinator/api": {"agent", "wire"}, "wire": {"overlay"}, "agent": {"overlay", "wire"}}
	if got := violations(bad); len(got) != 2 {
		t.Fatalf("checker found %d violations in a graph with 2: %q", len(got), got)
	}
}
