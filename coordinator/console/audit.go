package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/latchnet/latch/wire"
)

type auditData struct {
	Records []wire.AuditRecord
	// Filters as given.
	Action, Actor, Target, Since, Limit string
	Verify                              *wire.AuditVerifyResponse
	// Query is the filter as a query string, for the export link.
	Query string
}

// auditQuery returns the API query of the page's filters.
func auditQuery(q url.Values) url.Values {
	out := url.Values{}
	for _, k := range []string{"action", "actor", "target", "since", "limit"} {
		if v := strings.TrimSpace(q.Get(k)); v != "" {
			out.Set(k, v)
		}
	}
	return out
}

func (c *Console) handleAudit(w http.ResponseWriter, r *http.Request, s *session) {
	v := newView(r, s, "Audit", "audit")
	q := r.URL.Query()
	aq := auditQuery(q)
	d := auditData{Action: aq.Get("action"), Actor: aq.Get("actor"), Target: aq.Get("target"), Since: aq.Get("since"),
		Limit: aq.Get("limit"), Query: aq.Encode()}
	ctx := r.Context()
	err := c.call(ctx, r, s, http.MethodGet, wire.PathAudit+"?"+aq.Encode(), nil, &d.Records)
	if err == nil && q.Get("verify") == "1" {
		d.Verify = new(wire.AuditVerifyResponse)
		err = c.call(ctx, r, s, http.MethodGet, wire.PathAuditVerify, nil, d.Verify)
	}
	// Newest first on the page.
	for i, j := 0, len(d.Records)-1; i < j; i, j = i+1, j-1 {
		d.Records[i], d.Records[j] = d.Records[j], d.Records[i]
	}
	v.D = d
	if err != nil {
		c.fail(w, r, "audit", v, err)
		return
	}
	c.render(w, http.StatusOK, "audit", v)
}

// maxExport bounds one export's records.
const maxExport = 1_000_000

// handleAuditExport streams the records matching the filters (the whole
// log by default, oldest first) as JSON lines, paging through the API.
func (c *Console) handleAuditExport(w http.ResponseWriter, r *http.Request, s *session) {
	aq := auditQuery(r.URL.Query())
	aq.Del("limit")
	aq.Set("limit", "1000")
	var after int64
	enc := json.NewEncoder(w)
	started := false
	for n := 0; n < maxExport; {
		aq.Set("after_seq", strconv.FormatInt(after, 10))
		var recs []wire.AuditRecord
		if err := c.call(r.Context(), r, s, http.MethodGet, wire.PathAudit+"?"+aq.Encode(), nil, &recs); err != nil {
			if !started {
				plainError(w, statusOf(err), err.Error())
			}
			return
		}
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Header().Set("Content-Disposition", `attachment; filename="latch-audit.jsonl"`)
			started = true
		}
		if len(recs) == 0 {
			return
		}
		for _, rec := range recs {
			enc.Encode(rec)
			after = rec.Seq
		}
		n += len(recs)
	}
}
