package console

import (
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"

	"github.com/latchnet/latch/wire"
)

// maxTopologyNodes bounds the graph drawn; beyond it only the table is
// shown (a ring of hundreds of nodes reads as nothing).
const maxTopologyNodes = 60

// Geometry of the SVG, in its own units.
const (
	topoSize   = 640.0
	topoRadius = 250.0
)

type topoNode struct {
	Name   string
	Online bool
	X, Y   float64
	// LX, LY place the label outside the ring; Anchor is its text-anchor.
	LX, LY float64
	Anchor string
}

type topoEdge struct {
	Src, Dst string
	Ports    string
	// X1..Y2 are shortened to end at the nodes' rims.
	X1, Y1, X2, Y2 float64
}

type topologyData struct {
	Nodes []topoNode
	Edges []topoEdge
	// Drawn is false when there are too many nodes to draw.
	Drawn bool
	Size  float64
	// NoPolicy reports that no policy is saved (nothing may reach anything).
	NoPolicy bool
}

// handleTopology draws which node may reach which under the current
// policy, from the API's read-only pairs listing (nodes:read, like every
// role has): the same compiler output a policy dry run previews.
func (c *Console) handleTopology(w http.ResponseWriter, r *http.Request, s *session) {
	v := newView(r, s, "Topology", "topology")
	d := topologyData{Size: topoSize}
	v.D = d
	ctx := r.Context()
	var nodes []wire.NodeInfo
	if err := c.call(ctx, r, s, http.MethodGet, wire.PathNodes, nil, &nodes); err != nil {
		c.fail(w, r, "topology", v, err)
		return
	}
	var pp wire.PolicyPairs
	if err := c.call(ctx, r, s, http.MethodGet, wire.PathPolicyPairs, nil, &pp); err != nil {
		c.fail(w, r, "topology", v, err)
		return
	}
	d.NoPolicy = pp.Version == 0
	d.Nodes, d.Edges, d.Drawn = layout(nodes, pp.Pairs)
	v.D = d
	c.render(w, http.StatusOK, "topology", v)
}

// layout places nodes on a ring (sorted by name) and merges pairs into
// one edge per direction with their ports.
func layout(nodes []wire.NodeInfo, pairs []wire.Pair) ([]topoNode, []topoEdge, bool) {
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	drawn := len(nodes) <= maxTopologyNodes
	pos := make(map[string]int, len(nodes))
	out := make([]topoNode, len(nodes))
	mid := topoSize / 2
	for i, n := range nodes {
		a := 2*math.Pi*float64(i)/float64(max(len(nodes), 1)) - math.Pi/2
		cos, sin := math.Cos(a), math.Sin(a)
		tn := topoNode{Name: n.Name, Online: n.Online, X: mid + topoRadius*cos, Y: mid + topoRadius*sin,
			LX: mid + (topoRadius+18)*cos, LY: mid + (topoRadius+18)*sin + 4, Anchor: "middle"}
		switch {
		case cos > 0.3:
			tn.Anchor = "start"
		case cos < -0.3:
			tn.Anchor = "end"
		}
		if len(nodes) == 1 {
			tn.X, tn.Y, tn.LX, tn.LY = mid, mid, mid, mid+28
		}
		pos[n.Name] = i
		out[i] = tn
	}
	type key struct{ src, dst string }
	ports := map[key][]string{}
	var order []key
	for _, p := range pairs {
		k := key{p.Src, p.Dst}
		if _, ok := ports[k]; !ok {
			order = append(order, k)
		}
		port := p.Proto
		if p.Ports != "" {
			port += "/" + p.Ports
		}
		ports[k] = append(ports[k], port)
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].src != order[j].src {
			return order[i].src < order[j].src
		}
		return order[i].dst < order[j].dst
	})
	edges := make([]topoEdge, 0, len(order))
	for _, k := range order {
		e := topoEdge{Src: k.src, Dst: k.dst, Ports: strings.Join(ports[k], ", ")}
		si, ok1 := pos[k.src]
		di, ok2 := pos[k.dst]
		if ok1 && ok2 && si != di {
			a, b := out[si], out[di]
			dx, dy := b.X-a.X, b.Y-a.Y
			l := math.Hypot(dx, dy)
			// Offset both directions sideways so a two-way pair shows
			// two arrows, and stop at the rims (radius 10).
			ox, oy := -dy/l*4, dx/l*4
			e.X1, e.Y1 = a.X+dx/l*12+ox, a.Y+dy/l*12+oy
			e.X2, e.Y2 = b.X-dx/l*16+ox, b.Y-dy/l*16+oy
		}
		edges = append(edges, e)
	}
	return out, edges, drawn
}

// f2 formats an SVG coordinate.
func f2(x float64) string { return fmt.Sprintf("%.1f", x) }
