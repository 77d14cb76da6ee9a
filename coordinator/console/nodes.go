package console

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/latchnet/latch/wire"
)

type overviewData struct {
	Nodes, Online, Offline, Quarantined, Expired int
	// Pending is -1 when the role may not see access requests.
	Pending       int
	PolicyVersion int
	PolicyAuthor  string
	PolicySaved   time.Time
	// Denied are the latest flows dropped within recentFlows, newest
	// first; DeniedSeen reports that the flow log could be read at all.
	Denied     []wire.FlowRecord
	DeniedSeen bool
}

// recentFlows is how far back the overview looks for denied flows.
const recentFlows = "15m"

func (c *Console) handleOverview(w http.ResponseWriter, r *http.Request, s *session) {
	v := newView(r, s, "Overview", "overview")
	ctx := r.Context()
	var d overviewData
	var nodes []wire.NodeInfo
	if err := c.call(ctx, r, s, http.MethodGet, wire.PathNodes, nil, &nodes); err != nil {
		c.fail(w, r, "overview", v, err)
		return
	}
	d.Nodes = len(nodes)
	for _, n := range nodes {
		switch {
		case n.Online:
			d.Online++
		default:
			d.Offline++
		}
		if n.Quarantined {
			d.Quarantined++
		}
		if n.Expired {
			d.Expired++
		}
	}
	d.Pending = -1
	if s.can(wire.ScopeAccessApprove) {
		var reqs []wire.AccessRequest
		if err := c.call(ctx, r, s, http.MethodGet, wire.PathAccess+"?state=pending", nil, &reqs); err != nil {
			c.fail(w, r, "overview", v, err)
			return
		}
		d.Pending = len(reqs)
	}
	var p wire.PolicyInfo
	var ae *apiError
	switch err := c.call(ctx, r, s, http.MethodGet, wire.PathPolicy, nil, &p); {
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
	case err != nil:
		c.fail(w, r, "overview", v, err)
		return
	default:
		d.PolicyVersion, d.PolicyAuthor, d.PolicySaved = p.Version, p.Author, p.Created
	}
	if s.can(wire.ScopeAuditRead) {
		// Flow logs may be off or absent: the overview shows what it can.
		if err := c.call(ctx, r, s, http.MethodGet, wire.PathFlows+"?verdict=drop&limit=10&since="+recentFlows, nil, &d.Denied); err == nil {
			d.DeniedSeen = true
		}
	}
	v.D = d
	c.render(w, http.StatusOK, "overview", v)
}

type nodesData struct {
	Nodes []wire.NodeInfo
	// Filters as given.
	Q, Tag, Status, Posture string
	Total                   int
}

// postureMatches reports whether the node's reported posture meets every
// comma-separated condition of want: "attr=value" (also "attr == value")
// needs that value, a bare "attr" any value. static/console.js has the
// same rules.
func postureMatches(p *wire.Posture, want string) bool {
	attrs := p.Attrs()
	for _, cond := range strings.Split(want, ",") {
		cond = strings.TrimSpace(cond)
		if cond == "" {
			continue
		}
		k, v, hasV := strings.Cut(strings.Replace(cond, "==", "=", 1), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		got, ok := attrs[k]
		if !ok || (hasV && got != v) {
			return false
		}
	}
	return true
}

// nodeMatches is the nodes page filter; static/console.js applies the
// same rules to live updates.
func nodeMatches(n wire.NodeInfo, q, tag, status, posture string) bool {
	if posture != "" && !postureMatches(n.Posture, posture) {
		return false
	}
	if q != "" {
		q = strings.ToLower(q)
		hay := strings.ToLower(n.Name + " " + n.Hostname + " " + string(n.ID))
		for _, a := range n.Addresses {
			hay += " " + a.Addr().String()
		}
		if !strings.Contains(hay, q) {
			return false
		}
	}
	if tag != "" && !slices.Contains(n.Tags, wire.Tag(tag)) {
		return false
	}
	switch status {
	case "online":
		return n.Online
	case "offline":
		return !n.Online
	case "quarantined":
		return n.Quarantined
	case "expired":
		return n.Expired
	}
	return true
}

func (c *Console) handleNodes(w http.ResponseWriter, r *http.Request, s *session) {
	v := newView(r, s, "Nodes", "nodes")
	q := r.URL.Query()
	d := nodesData{Q: strings.TrimSpace(q.Get("q")), Tag: strings.TrimSpace(q.Get("tag")), Status: q.Get("status"),
		Posture: strings.TrimSpace(q.Get("posture"))}
	v.D = d
	var nodes []wire.NodeInfo
	if err := c.call(r.Context(), r, s, http.MethodGet, wire.PathNodes, nil, &nodes); err != nil {
		c.fail(w, r, "nodes", v, err)
		return
	}
	d.Total = len(nodes)
	for _, n := range nodes {
		if nodeMatches(n, d.Q, d.Tag, d.Status, d.Posture) {
			d.Nodes = append(d.Nodes, n)
		}
	}
	v.D = d
	c.render(w, http.StatusOK, "nodes", v)
}

type nodeData struct {
	N wire.NodeInfo
	// Confirm names an action awaiting confirmation (revoke, delete).
	Confirm string
	Now     time.Time
	// Reaches and ReachedBy are the node's pairs under the current
	// policy, one per peer with its ports (Src or Dst is the node);
	// PairsShown is false where they were not read (forms, errors).
	Reaches, ReachedBy []topoEdge
	PairsShown         bool
}

// nodePairs reads the pairs with the node named name at either end and
// splits them into those it opens and those it receives.
func (c *Console) nodePairs(r *http.Request, s *session, name string) (reaches, reachedBy []topoEdge, err error) {
	var pp wire.PolicyPairs
	if err := c.call(r.Context(), r, s, http.MethodGet, wire.PathPolicyPairs+"?node="+url.QueryEscape(name), nil, &pp); err != nil {
		return nil, nil, err
	}
	_, edges, _ := layout(nil, pp.Pairs)
	for _, e := range edges {
		if e.Src == name {
			reaches = append(reaches, e)
		}
		if e.Dst == name {
			reachedBy = append(reachedBy, e)
		}
	}
	return reaches, reachedBy, nil
}

func (c *Console) handleNode(w http.ResponseWriter, r *http.Request, s *session) {
	ref := r.PathValue("ref")
	v := newView(r, s, "Node "+ref, "nodes")
	var n wire.NodeInfo
	if err := c.call(r.Context(), r, s, http.MethodGet, wire.PathNodes+"/"+url.PathEscape(ref), nil, &n); err != nil {
		c.fail(w, r, "node", v, err)
		return
	}
	v.Title = "Node " + n.Name
	d := nodeData{N: n, Now: c.cfg.Now(), PairsShown: true}
	var err error
	if d.Reaches, d.ReachedBy, err = c.nodePairs(r, s, n.Name); err != nil {
		c.fail(w, r, "node", v, err)
		return
	}
	v.D = d
	c.render(w, http.StatusOK, "node", v)
}

// handleNodeAction performs one node action through the API. Revoke and
// delete ask for confirmation first (a second form with confirm=yes).
func (c *Console) handleNodeAction(w http.ResponseWriter, r *http.Request, s *session) {
	ref, action := r.PathValue("ref"), r.PathValue("action")
	base := wire.PathNodes + "/" + url.PathEscape(ref)
	page := Prefix + "/nodes/" + url.PathEscape(ref)
	var (
		method = http.MethodPost
		path   string
		body   any
		done   string
		after  = page
	)
	switch action {
	case "revoke", "delete":
		if r.PostFormValue("confirm") != "yes" {
			v := newView(r, s, "Confirm", "nodes")
			var n wire.NodeInfo
			if err := c.call(r.Context(), r, s, http.MethodGet, base, nil, &n); err != nil {
				c.fail(w, r, "node", v, err)
				return
			}
			v.D = nodeData{N: n, Confirm: action, Now: c.cfg.Now()}
			c.render(w, http.StatusOK, "node", v)
			return
		}
		if action == "revoke" {
			path, done = base+"/revoke", "revoked"
		} else {
			method, path, done = http.MethodDelete, base, "deleted"
		}
		after = Prefix + "/nodes"
	case "quarantine":
		path, done = base+wire.PathNodeQuarantine, "quarantined"
		body = wire.QuarantineRequest{Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	case "unquarantine":
		path, done, body = base+wire.PathNodeUnquarantine, "released", struct{}{}
	case "expiry":
		var req wire.SetNodeExpiryRequest
		switch r.PostFormValue("mode") {
		case "now":
			req.Now = true
		case "never":
			req.Never = true
		default:
			d, err := parseDuration(r.PostFormValue("in"))
			if err != nil {
				c.nodeFormError(w, r, s, base, http.StatusBadRequest, "expiry: "+err.Error())
				return
			}
			req.In = d
		}
		path, done, body = base+wire.PathNodeExpiry, "expiry", req
	case "tags":
		path, done = base+wire.PathNodeTags, "tags"
		body = wire.SetNodeTagsRequest{Tags: splitTags(r.PostFormValue("tags"))}
	default:
		plainError(w, http.StatusNotFound, "no such node action")
		return
	}
	if err := c.call(r.Context(), r, s, method, path, body, nil); err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			c.nodeFormError(w, r, s, base, ae.Status, ae.Message)
			return
		}
		c.fail(w, r, "node", newView(r, s, "Node", "nodes"), err)
		return
	}
	redirect(w, r, after, done)
}

// nodeFormError shows the node page again (if the node can still be
// read) with the refusal and its status.
func (c *Console) nodeFormError(w http.ResponseWriter, r *http.Request, s *session, base string, status int, msg string) {
	v := newView(r, s, "Node", "nodes")
	var n wire.NodeInfo
	if err := c.call(r.Context(), r, s, http.MethodGet, base, nil, &n); err == nil {
		v.D = nodeData{N: n, Now: c.cfg.Now()}
	}
	v.Error = msg
	c.render(w, status, "node", v)
}

// splitTags reads a comma or space separated tag list.
func splitTags(s string) []wire.Tag {
	tags := []wire.Tag{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
		tags = append(tags, wire.Tag(f))
	}
	return tags
}

// parseDuration reads a Go duration, also accepting days ("30d").
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := time.ParseDuration(d + "h"); err == nil {
			return n * 24, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("want a duration like 24h, 30m or 7d")
	}
	return d, nil
}
