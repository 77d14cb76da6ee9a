package console

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/latchnet/latch/wire"
)

type flowsData struct {
	Flows []wire.FlowRecord
	// Filters as given.
	Node, Verdict, Since, Limit string
}

// handleFlows lists recent flow summaries (GET wire.PathFlows, audit:read)
// with the API's filters.
func (c *Console) handleFlows(w http.ResponseWriter, r *http.Request, s *session) {
	v := newView(r, s, "Flows", "flows")
	q := r.URL.Query()
	d := flowsData{Node: strings.TrimSpace(q.Get("node")), Verdict: q.Get("verdict"), Since: strings.TrimSpace(q.Get("since")),
		Limit: strings.TrimSpace(q.Get("limit"))}
	aq := url.Values{}
	for k, val := range map[string]string{"node": d.Node, "verdict": d.Verdict, "since": d.Since, "limit": d.Limit} {
		if val != "" {
			aq.Set(k, val)
		}
	}
	v.D = d
	if err := c.call(r.Context(), r, s, http.MethodGet, wire.PathFlows+"?"+aq.Encode(), nil, &d.Flows); err != nil {
		c.fail(w, r, "flows", v, err)
		return
	}
	v.D = d
	c.render(w, http.StatusOK, "flows", v)
}
