package api

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// Flow logs: agents POST wire.PathNodeFlows (mTLS) every few seconds with
// the flow summaries of one interval; admins list them with GET
// wire.PathFlows (scope audit:read). Reports are telemetry, not changes of
// state: they are not written to the audit log (which would drown in
// them), and retention deletes them (coordinator/flowsweep.go).
//
// A node reports only for itself: the reporter is the node of the client
// certificate, never a field of the body, and every summary must have the
// reporter at its own end (the destination of an inbound summary, the
// source of an outbound one) whenever that end is named.

// DefaultFlowReportLimit bounds flow reports per node: agents report every
// few seconds (at most once a second), so this leaves room for bursts and
// refuses a node that floods.
var DefaultFlowReportLimit = ratelimit.Limit{Rate: 1, Burst: 10}

// Bounds of one flow report.
const (
	// maxFlowReportBytes bounds a report's body: MaxFlowsPerReport
	// summaries of a few hundred bytes each.
	maxFlowReportBytes = 1 << 20
	// maxFlowFieldLen bounds the free-text fields (reason, rule, node IDs).
	maxFlowFieldLen = 128
	// maxFlowClockSkew is how far in the future a summary's times may lie
	// (the agent's clock against ours).
	maxFlowClockSkew = 5 * time.Minute
	// maxFlowAge is how old a summary may be when reported: agents report
	// within seconds; anything older is not a live report.
	maxFlowAge = 24 * time.Hour
)

// routeFlows registers the flow log routes.
func (s *Server) routeFlows() {
	l := s.cfg.FlowReports
	if l == (ratelimit.Limit{}) {
		l = DefaultFlowReportLimit
	}
	lim := ratelimit.New(ratelimit.Config{Limit: l, MaxKeys: s.cfg.RateLimits.MaxKeys, Now: s.cfg.Now})
	s.route(wire.PathNodeFlows, map[string]http.HandlerFunc{http.MethodPost: s.agent(s.node(s.limitFlows(lim, s.handleReportFlows)))})
	s.route(wire.PathFlows, map[string]http.HandlerFunc{http.MethodGet: s.admin(wire.ScopeAuditRead, s.handleListFlows)})
}

// limitFlows applies the per-node report limit before the body is read.
func (s *Server) limitFlows(lim *ratelimit.Limiter, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n := nodeFrom(r)
		if ok, retry := lim.Allow(string(n.ID)); !ok {
			s.log.Info("flow reports rate limited", logNode, n.ID, logRemote, r.RemoteAddr)
			tooMany(w, "flow reports from this node", retry)
			return
		}
		h(w, r)
	}
}

func (s *Server) handleReportFlows(w http.ResponseWriter, r *http.Request) {
	n := nodeFrom(r)
	var rep wire.FlowReport
	if !decodeLimit(w, r, &rep, maxFlowReportBytes) {
		return
	}
	if len(rep.Flows) > wire.MaxFlowsPerReport {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("flow report has %d summaries; at most %d per report", len(rep.Flows), wire.MaxFlowsPerReport))
		return
	}
	now := s.cfg.Now()
	for i := range rep.Flows {
		if err := checkFlow(&rep.Flows[i], n.ID, now); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("flow %d: %v", i, err))
			return
		}
	}
	if len(rep.Flows) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	// Resolve names once per distinct node ID; nodes deleted since the
	// agent saw them keep their ID without a name. A named node must hold
	// the address the summary gives it: an agent names identities, it
	// cannot move them.
	type known struct {
		name   string
		v4, v6 netip.Addr
		found  bool
	}
	nodes := map[wire.NodeID]known{n.ID: {n.Name, n.IPv4, n.IPv6, true}}
	resolve := func(id wire.NodeID, a netip.Addr) (string, error) {
		if id == "" {
			return "", nil
		}
		k, ok := nodes[id]
		if !ok {
			node, err := s.cfg.Store.Node(r.Context(), id)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return "", err
			}
			k = known{node.Name, node.IPv4, node.IPv6, err == nil}
			nodes[id] = k
		}
		if k.found && a != k.v4 && a != k.v6 {
			return "", errFlowAddr{id, a}
		}
		return k.name, nil
	}
	recs := make([]wire.FlowRecord, len(rep.Flows))
	for i, f := range rep.Flows {
		src, err := resolve(f.SrcNode, f.Src)
		if err == nil {
			var dst string
			if dst, err = resolve(f.DstNode, f.Dst); err == nil {
				recs[i] = wire.FlowRecord{FlowSummary: f, Reporter: n.ID, ReporterName: n.Name, SrcName: src, DstName: dst, Received: now}
				continue
			}
		}
		var bad errFlowAddr
		if errors.As(err, &bad) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("flow %d: %v", i, err))
			return
		}
		s.internalError(w, r, "resolving flow identities", err)
		return
	}
	if err := s.cfg.Store.InsertFlows(r.Context(), recs); err != nil {
		s.internalError(w, r, "storing flows", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// errFlowAddr reports a summary naming a node for an address it does
// not hold.
type errFlowAddr struct {
	id   wire.NodeID
	addr netip.Addr
}

func (e errFlowAddr) Error() string {
	return fmt.Sprintf("node %s does not hold address %s", e.id, e.addr)
}

// checkFlow validates one summary reported by node self at now.
func checkFlow(f *wire.FlowSummary, self wire.NodeID, now time.Time) error {
	switch f.Direction {
	case "in":
		if f.DstNode != "" && f.DstNode != self {
			return fmt.Errorf("an inbound flow's destination must be the reporting node, not %q", f.DstNode)
		}
	case "out":
		if f.SrcNode != "" && f.SrcNode != self {
			return fmt.Errorf("an outbound flow's source must be the reporting node, not %q", f.SrcNode)
		}
	default:
		return fmt.Errorf("direction %q: want \"in\" or \"out\"", f.Direction)
	}
	if f.Verdict != wire.FlowAccept && f.Verdict != wire.FlowDrop {
		return fmt.Errorf("verdict %q: want %q or %q", f.Verdict, wire.FlowAccept, wire.FlowDrop)
	}
	if f.Reason == "" {
		return errors.New("no reason")
	}
	for _, fld := range []struct{ name, v string }{
		{"reason", f.Reason}, {"rule", f.Rule}, {"src_node", string(f.SrcNode)}, {"dst_node", string(f.DstNode)},
	} {
		if err := checkFlowText(fld.name, fld.v); err != nil {
			return err
		}
	}
	if f.Src.Zone() != "" || f.Dst.Zone() != "" {
		return errors.New("addresses must not carry a zone")
	}
	if f.Packets == 0 {
		return errors.New("no packets")
	}
	if f.Packets > math.MaxInt64 || f.Bytes > math.MaxInt64 {
		return errors.New("packet or byte count out of range")
	}
	if f.First.IsZero() || f.Last.IsZero() || f.Last.Before(f.First) {
		return errors.New("first and last must be set, first not after last")
	}
	if f.Last.After(now.Add(maxFlowClockSkew)) {
		return fmt.Errorf("last %s is in the future", f.Last.UTC().Format(time.RFC3339))
	}
	if f.First.Before(now.Add(-maxFlowAge)) {
		return fmt.Errorf("first %s is more than %v ago", f.First.UTC().Format(time.RFC3339), maxFlowAge)
	}
	return nil
}

// checkFlowText bounds a free-text field to short printable ASCII.
func checkFlowText(name, v string) error {
	if len(v) > maxFlowFieldLen {
		return fmt.Errorf("%s longer than %d bytes", name, maxFlowFieldLen)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("%s %q: only printable ASCII without spaces", name, v)
		}
	}
	return nil
}

func (s *Server) handleListFlows(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f store.FlowFilter
	switch v := q.Get("verdict"); v {
	case "", wire.FlowAccept, wire.FlowDrop:
		f.Verdict = v
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid verdict %q: want %q or %q", v, wire.FlowAccept, wire.FlowDrop))
		return
	}
	if v := q.Get("since"); v != "" {
		since, err := parseSince(v, s.cfg.Now())
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		f.Since = since
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxFlowLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid limit %q: want 1..%d", v, store.MaxFlowLimit))
			return
		}
		f.Limit = n
	}
	if ref := q.Get("node"); ref != "" {
		n, err := s.cfg.Store.Node(r.Context(), wire.NodeID(ref))
		if errors.Is(err, store.ErrNotFound) {
			n, err = s.cfg.Store.NodeByName(r.Context(), ref)
		}
		switch {
		case err == nil:
			f.Node = n.ID
		case errors.Is(err, store.ErrNotFound):
			// A node deleted since: match what the records kept.
			f.Node, f.NodeName = wire.NodeID(ref), ref
		default:
			s.internalError(w, r, "looking up node", err)
			return
		}
	}
	recs, err := s.cfg.Store.Flows(r.Context(), f)
	if err != nil {
		s.internalError(w, r, "listing flows", err)
		return
	}
	writeJSON(w, http.StatusOK, recs)
}
