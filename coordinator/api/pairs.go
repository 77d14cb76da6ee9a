package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// handlePolicyPairs lists the pairs the current policy allows on the
// current inventory, optionally only those with ?node= (an ID or a name)
// at either end. It reads the policy and nodes and needs only nodes:read,
// so read-only roles can see who may reach whom without a dry run.
func (s *Server) handlePolicyPairs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var filter string
	if ref := r.URL.Query().Get("node"); ref != "" {
		n, err := s.cfg.Store.Node(ctx, wire.NodeID(ref))
		if errors.Is(err, store.ErrNotFound) {
			n, err = s.cfg.Store.NodeByName(ctx, ref)
		}
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("node %q not found", truncate(ref, 70)))
			return
		}
		if err != nil {
			s.internalError(w, r, "reading node", err)
			return
		}
		filter = n.Name
	}
	resp := wire.PolicyPairs{Node: filter, Pairs: []wire.Pair{}}
	cur, p, err := s.currentPolicy(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeJSON(w, http.StatusOK, resp) // no policy: nothing may reach anything
		return
	case err != nil:
		s.internalError(w, r, "reading current policy", err)
		return
	}
	nodes, err := s.cfg.Store.Nodes(ctx)
	if err != nil {
		s.internalError(w, r, "listing nodes", err)
		return
	}
	resp.Version = cur.Version
	resp.Pairs = filterPairs(pairsUnder(p, nodes), filter)
	writeJSON(w, http.StatusOK, resp)
}

// pairsUnder returns every pair p's rules allow on nodes, never nil.
func pairsUnder(p *policy.Policy, nodes []store.Node) []wire.Pair {
	pairs := inventoryCompiler(p, nodes).Pairs()
	if pairs == nil {
		pairs = []wire.Pair{}
	}
	return pairs
}

// filterPairs keeps the pairs with node at either end; "" keeps all.
func filterPairs(pairs []wire.Pair, node string) []wire.Pair {
	if node == "" {
		return pairs
	}
	out := []wire.Pair{}
	for _, p := range pairs {
		if p.Src == node || p.Dst == node {
			out = append(out, p)
		}
	}
	return out
}
