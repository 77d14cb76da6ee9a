package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/wire"
)

// flowPair enrolls web and api and returns them.
func flowPair(t *testing.T, e *env) (web, api *agent) {
	t.Helper()
	key := e.createKey(wire.CreateKeyRequest{Reusable: true, Tags: []wire.Tag{"tag:mesh"}})
	return e.enroll(key.Key, "web"), e.enroll(key.Key, "api")
}

// inbound is a summary as api reports web's connection to it.
func inbound(e *env, web, api *agent, port uint16, verdict, reason string) wire.FlowSummary {
	now := e.clock.Now()
	return wire.FlowSummary{
		Direction: "in",
		Src:       web.resp.Node.Addresses[0].Addr(),
		Dst:       api.resp.Node.Addresses[0].Addr(),
		SrcNode:   web.resp.Node.ID,
		DstNode:   api.resp.Node.ID,
		Proto:     wire.ProtoTCP,
		DstPort:   port,
		Verdict:   verdict,
		Reason:    reason,
		Packets:   10,
		Bytes:     1234,
		First:     now.Add(-4 * time.Second),
		Last:      now.Add(-time.Second),
	}
}

func (e *env) postFlows(c *http.Client, rep any) (int, []byte) {
	e.t.Helper()
	return e.do(c, http.MethodPost, wire.PathNodeFlows, agentHdr(), mustJSON(rep))
}

func (e *env) listFlows(query string) []wire.FlowRecord {
	e.t.Helper()
	var out []wire.FlowRecord
	e.admin(http.MethodGet, wire.PathFlows+query, nil, http.StatusOK, &out)
	return out
}

func TestFlowReportIsStoredWithResolvedIdentities(t *testing.T) {
	e := newEnv(t, nil)
	e.setPolicy(meshPolicy)
	web, api := flowPair(t, e)
	unknown := inbound(e, web, api, 22, wire.FlowDrop, "drop-no-rule")
	unknown.Src, unknown.SrcNode = netip.MustParseAddr("100.64.9.9"), ""
	rep := wire.FlowReport{Flows: []wire.FlowSummary{inbound(e, web, api, 8080, wire.FlowAccept, "accept-rule"), unknown}}
	if status, b := e.postFlows(api.client, rep); status != http.StatusNoContent {
		t.Fatalf("report: %d %s", status, b)
	}
	got := e.listFlows("")
	if len(got) != 2 {
		t.Fatalf("%d records, want 2", len(got))
	}
	newest, oldest := got[0], got[1]
	if newest.DstPort != 22 || oldest.DstPort != 8080 {
		t.Errorf("order: ports %d, %d; want newest (22) first", newest.DstPort, oldest.DstPort)
	}
	if oldest.Reporter != api.resp.Node.ID || oldest.ReporterName != "api" || oldest.SrcName != "web" || oldest.DstName != "api" {
		t.Errorf("identities: %+v", oldest)
	}
	if newest.SrcNode != "" || newest.SrcName != "" || newest.Src != unknown.Src {
		t.Errorf("an unknown sender must keep its address only: %+v", newest)
	}
	if oldest.Packets != 10 || oldest.Bytes != 1234 || oldest.Reason != "accept-rule" {
		t.Errorf("counters: %+v", oldest)
	}
}

func TestFlowReportAuthentication(t *testing.T) {
	e := newEnv(t, nil)
	e.setPolicy(meshPolicy)
	web, api := flowPair(t, e)

	// No client certificate.
	if status, _ := e.postFlows(e.client, wire.FlowReport{}); status != http.StatusUnauthorized {
		t.Errorf("no certificate: %d, want 401", status)
	}
	// web cannot report api's inbound traffic: the reporter is always
	// the certificate's node, and its own end must be itself.
	forged := inbound(e, web, api, 8080, wire.FlowAccept, "accept-rule")
	if status, b := e.postFlows(web.client, wire.FlowReport{Flows: []wire.FlowSummary{forged}}); status != http.StatusBadRequest {
		t.Errorf("web posting as api: %d %s, want 400", status, b)
	}
	out := forged
	out.Direction = "out"
	out.SrcNode = api.resp.Node.ID // outbound from api, claimed by web
	out.DstNode = web.resp.Node.ID
	if status, b := e.postFlows(web.client, wire.FlowReport{Flows: []wire.FlowSummary{out}}); status != http.StatusBadRequest {
		t.Errorf("web posting api's outbound flow: %d %s, want 400", status, b)
	}
	// web's own outbound summary is recorded with web as the reporter.
	own := forged
	own.Direction = "out"
	if status, b := e.postFlows(web.client, wire.FlowReport{Flows: []wire.FlowSummary{own}}); status != http.StatusNoContent {
		t.Fatalf("web's own report: %d %s", status, b)
	}
	got := e.listFlows("")
	if len(got) != 1 || got[0].Reporter != web.resp.Node.ID {
		t.Fatalf("records %+v, want one reported by web", got)
	}
	// A deleted node's certificate no longer reports.
	e.admin(http.MethodDelete, wire.PathNodes+"/web", nil, http.StatusNoContent, nil)
	if status, _ := e.postFlows(web.client, wire.FlowReport{Flows: []wire.FlowSummary{own}}); status != http.StatusForbidden {
		t.Errorf("deleted node: %d, want 403", status)
	}
}

func TestBadFlowReportsAreRefusedAndStoreNothing(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.FlowReports = ratelimit.Limit{Rate: -1} })
	e.setPolicy(meshPolicy)
	web, api := flowPair(t, e)
	good := inbound(e, web, api, 8080, wire.FlowAccept, "accept-rule")
	mod := func(f func(*wire.FlowSummary)) wire.FlowReport {
		s := good
		f(&s)
		// A good summary first: one bad one refuses the whole report.
		return wire.FlowReport{Flows: []wire.FlowSummary{good, s}}
	}
	many := wire.FlowReport{}
	for range wire.MaxFlowsPerReport + 1 {
		many.Flows = append(many.Flows, good)
	}
	for _, tc := range []struct {
		name string
		body any
		want int
	}{
		{"direction", mod(func(s *wire.FlowSummary) { s.Direction = "sideways" }), 400},
		{"verdict", mod(func(s *wire.FlowSummary) { s.Verdict = "maybe" }), 400},
		{"no reason", mod(func(s *wire.FlowSummary) { s.Reason = "" }), 400},
		{"long reason", mod(func(s *wire.FlowSummary) { s.Reason = strings.Repeat("x", 200) }), 400},
		{"reason with spaces", mod(func(s *wire.FlowSummary) { s.Reason = "a b" }), 400},
		{"no packets", mod(func(s *wire.FlowSummary) { s.Packets = 0 }), 400},
		{"huge counter", mod(func(s *wire.FlowSummary) { s.Bytes = 1 << 63 }), 400},
		{"far future", mod(func(s *wire.FlowSummary) { s.Last = e.clock.Now().Add(48 * time.Hour) }), 400},
		{"ancient", mod(func(s *wire.FlowSummary) { s.First = e.clock.Now().Add(-48 * time.Hour) }), 400},
		{"last before first", mod(func(s *wire.FlowSummary) { s.First, s.Last = s.Last, s.First }), 400},
		{"identity at another's address", mod(func(s *wire.FlowSummary) { s.Src = s.Dst }), 400},
		{"unknown field", map[string]any{"flows": []any{}, "reporter": "api"}, 400},
		{"too many summaries", many, 413},
		{"body too large", map[string]any{"flows": []string{strings.Repeat("x", 2<<20)}}, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, b := e.postFlows(api.client, tc.body)
			if status != tc.want {
				t.Fatalf("status %d %s, want %d", status, b, tc.want)
			}
			errorMessage(t, b)
		})
	}
	if got := e.listFlows(""); len(got) != 0 {
		t.Errorf("%d records stored from refused reports, want 0", len(got))
	}
}

func TestFlowReportsAreRateLimitedPerNode(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.FlowReports = ratelimit.Limit{Rate: 0.001, Burst: 3} })
	e.setPolicy(meshPolicy)
	web, api := flowPair(t, e)
	rep := wire.FlowReport{Flows: []wire.FlowSummary{inbound(e, web, api, 8080, wire.FlowAccept, "accept-rule")}}
	for i := range 3 {
		if status, b := e.postFlows(api.client, rep); status != http.StatusNoContent {
			t.Fatalf("report %d: %d %s", i, status, b)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, e.url+wire.PathNodeFlows, strings.NewReader(string(mustJSON(rep))))
	for k, v := range agentHdr() {
		req.Header.Set(k, v)
	}
	resp, err := api.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("flooding node: %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Another node has its own budget.
	own := inbound(e, web, api, 8080, wire.FlowAccept, "accept-rule")
	own.Direction = "out"
	if status, b := e.postFlows(web.client, wire.FlowReport{Flows: []wire.FlowSummary{own}}); status != http.StatusNoContent {
		t.Errorf("another node: %d %s", status, b)
	}
}

func TestListFlowsScopeAndFilters(t *testing.T) {
	e := newEnv(t, nil)
	e.setPolicy(meshPolicy)
	web, api := flowPair(t, e)
	rep := wire.FlowReport{Flows: []wire.FlowSummary{
		inbound(e, web, api, 8080, wire.FlowAccept, "accept-rule"),
		inbound(e, web, api, 22, wire.FlowDrop, "drop-no-rule"),
	}}
	if status, b := e.postFlows(api.client, rep); status != http.StatusNoContent {
		t.Fatalf("report: %d %s", status, b)
	}
	own := inbound(e, web, api, 8080, wire.FlowAccept, "accept-outbound")
	own.Direction = "out"
	e.clock.Advance(40 * time.Minute) // within the certificates' hour
	if status, b := e.postFlows(web.client, wire.FlowReport{Flows: []wire.FlowSummary{own}}); status != http.StatusNoContent {
		t.Fatalf("report: %d %s", status, b)
	}

	// Scope: audit:read (or admin) only.
	reader := e.createToken("auditor", wire.ScopeAuditRead)
	other := e.createToken("ops", wire.ScopeNodesRead, wire.ScopeNodesWrite)
	e.as(reader, http.MethodGet, wire.PathFlows, nil, http.StatusOK, nil)
	e.as(other, http.MethodGet, wire.PathFlows, nil, http.StatusForbidden, nil)
	if status, _ := e.do(e.client, http.MethodGet, wire.PathFlows, nil, nil); status != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", status)
	}

	for _, tc := range []struct {
		query string
		want  []uint16
	}{
		{"", []uint16{8080, 22, 8080}},
		{"?verdict=drop", []uint16{22}},
		{"?node=web&verdict=accept", []uint16{8080, 8080}},
		{"?node=" + string(api.resp.Node.ID), []uint16{8080, 22, 8080}},
		{"?since=30m", []uint16{8080}},
		{"?since=" + url.QueryEscape(e.clock.Now().Add(-30*time.Minute).Format(time.RFC3339)), []uint16{8080}},
		{"?limit=1", []uint16{8080}},
		{"?node=ghost", nil},
	} {
		t.Run(tc.query, func(t *testing.T) {
			got := e.listFlows(tc.query)
			var ports []uint16
			for _, r := range got {
				ports = append(ports, r.DstPort)
			}
			if fmt.Sprint(ports) != fmt.Sprint(tc.want) {
				t.Errorf("ports %v, want %v", ports, tc.want)
			}
		})
	}
	if got := e.listFlows("?node=web&verdict=accept"); len(got) == 2 && got[0].Reporter != web.resp.Node.ID {
		t.Errorf("newest first: %+v", got[0])
	}
	for _, q := range []string{"?verdict=maybe", "?limit=0", "?limit=100001", "?since=yesterday"} {
		status, b := e.do(e.client, http.MethodGet, wire.PathFlows+q, e.adminHdr(), nil)
		if status != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, status)
		}
		var we wire.Error
		if json.Unmarshal(b, &we) != nil || we.Message == "" {
			t.Errorf("%s: not a wire.Error: %s", q, b)
		}
	}
}
