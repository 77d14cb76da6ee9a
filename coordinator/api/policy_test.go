package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/latchnet/latch/wire"
)

// refPolicy is the reference policy: web may reach svc:api, api svc:db;
// ci may ask for db access, approved by group:dba (alice); ci may use
// svc:staging at once for up to an hour.
const refPolicy = `{
  "groups": {"group:dba": ["alice@example.com"]},
  "tagOwners": {"tag:web": [], "tag:api": [], "tag:db": [], "tag:ci": [], "tag:staging": []},
  "services": {
    "svc:api":     {"tags": ["tag:api"], "ports": ["8080/tcp"]},
    "svc:db":      {"tags": ["tag:db"],  "ports": ["5432/tcp", "9187/tcp"]},
    "svc:staging": {"tags": ["tag:staging"], "ports": ["443/tcp"]},
  },
  "rules": [
    {"src": ["tag:web"], "dst": ["svc:api"]},
    {"src": ["tag:api"], "dst": ["svc:db"]},
  ],
  "access": [
    {"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba"], "maxDuration": "1h"},
    {"src": ["tag:ci"], "dst": ["svc:staging"], "autoApprove": true, "maxDuration": "1h"},
  ],
  "tests": [
    {"src": "tag:web", "accept": ["svc:api"], "deny": ["svc:db", "tag:db:22"]},
  ],
}`

// hosts enrolls web, api, db and ci, each with its own tag.
type hosts struct{ web, api, db, ci *agent }

func (e *env) enrollHosts() hosts {
	e.t.Helper()
	enroll := func(name string) *agent {
		key := e.createKey(wire.CreateKeyRequest{Tags: []wire.Tag{wire.Tag("tag:" + name)}})
		return e.enroll(key.Key, name)
	}
	return hosts{web: enroll("web"), api: enroll("api"), db: enroll("db"), ci: enroll("ci")}
}

// follow opens a's stream and returns it with its first netmap.
func (e *env) follow(a *agent) *follower {
	e.t.Helper()
	s, status := e.openStream(a.client)
	if status != http.StatusOK {
		e.t.Fatalf("stream: %d", status)
	}
	m := s.next()
	if m.Type != wire.MsgNetmap {
		e.t.Fatalf("first message %s", m.Type)
	}
	return &follower{s: s, nm: m.Netmap}
}

// follower is a stream and the netmap it has built.
type follower struct {
	s  *stream
	nm *wire.Netmap
}

// next applies the next delta.
func (f *follower) next() *wire.Delta {
	f.s.t.Helper()
	m := f.s.next()
	if m.Type != wire.MsgDelta {
		f.s.t.Fatalf("got %s, want a delta", m.Type)
	}
	nm, err := f.nm.Apply(m.Delta)
	if err != nil {
		f.s.t.Fatal(err)
	}
	f.nm = nm
	return m.Delta
}

func (f *follower) peers() []string {
	var names []string
	for _, p := range f.nm.Peers {
		names = append(names, p.Name)
	}
	return names
}

func (f *follower) rule(id string) (wire.FilterRule, bool) {
	for _, r := range f.nm.Rules {
		if r.ID == id {
			return r, true
		}
	}
	return wire.FilterRule{}, false
}

func (f *follower) peer(name string) (wire.Peer, bool) {
	for _, p := range f.nm.Peers {
		if p.Name == name {
			return p, true
		}
	}
	return wire.Peer{}, false
}

func TestPolicyDecidesWhatEachNodeSees(t *testing.T) {
	e := newEnv(t, nil)
	h := e.enrollHosts()
	db := e.follow(h.db)
	web := e.follow(h.web)
	if len(db.nm.Peers) != 0 || len(web.nm.Peers) != 0 {
		t.Fatal("nodes see peers before any policy is saved")
	}
	resp := e.setPolicy(refPolicy)
	if resp.Version != 1 || len(resp.Lost) != 0 {
		t.Fatalf("save %+v", resp)
	}
	want := []wire.Pair{
		{Src: "api", Dst: "db", Proto: "tcp", Ports: "5432"},
		{Src: "api", Dst: "db", Proto: "tcp", Ports: "9187"},
		{Src: "web", Dst: "api", Proto: "tcp", Ports: "8080"},
	}
	if !slices.Equal(resp.Gained, want) {
		t.Fatalf("gained %+v, want %+v", resp.Gained, want)
	}
	db.next()
	web.next()
	if !slices.Equal(db.peers(), []string{"api"}) || len(db.nm.Rules) != 1 {
		t.Fatalf("db sees %v with rules %+v: want api only", db.peers(), db.nm.Rules)
	}
	if p, _ := db.peer("api"); !slices.Equal(p.Rules, []string{db.nm.Rules[0].ID}) {
		t.Fatalf("db's entry for api %+v", p)
	}
	if p, ok := web.peer("api"); !ok || len(web.nm.Peers) != 1 || len(p.Rules) != 0 || len(web.nm.Rules) != 0 {
		t.Fatalf("web's netmap %+v: want api, with no rules", web.nm)
	}
}

func TestPolicyVersionsListAndRestore(t *testing.T) {
	e := newEnv(t, nil)
	e.enrollHosts()
	var none wire.PolicyInfo
	e.admin(http.MethodGet, wire.PathPolicy, nil, http.StatusNotFound, &none)
	first := e.setPolicy(refPolicy)
	second := e.setPolicy(webAPIPolicy)
	if first.Version != 1 || second.Version != 2 || len(second.Gained) != 0 || len(second.Lost) != 2 {
		t.Fatalf("saves %+v %+v: the second loses api -> db", first, second)
	}
	var cur wire.PolicyInfo
	e.admin(http.MethodGet, wire.PathPolicy, nil, http.StatusOK, &cur)
	if cur.Version != 2 || cur.Source != webAPIPolicy || !strings.Contains(cur.Author, "bootstrap") {
		t.Fatalf("current %+v", cur)
	}
	var list []wire.PolicyInfo
	e.admin(http.MethodGet, wire.PathPolicyVersions, nil, http.StatusOK, &list)
	if len(list) != 2 || list[0].Version != 2 || list[1].Version != 1 || list[0].Source != "" {
		t.Fatalf("versions %+v: want 2, 1 without sources", list)
	}
	var v1 wire.PolicyInfo
	e.admin(http.MethodGet, wire.PathPolicyVersions+"/1", nil, http.StatusOK, &v1)
	if v1.Source != refPolicy {
		t.Fatalf("version 1 source %q", v1.Source)
	}
	e.admin(http.MethodGet, wire.PathPolicyVersions+"/9", nil, http.StatusNotFound, nil)
	e.admin(http.MethodGet, wire.PathPolicyVersions+"/x", nil, http.StatusBadRequest, nil)

	// A dry run of the restore reports and stores nothing.
	var dry wire.SetPolicyResponse
	e.admin(http.MethodPost, wire.PathPolicyVersions+"/1/restore", map[string]any{"dry_run": true}, http.StatusOK, &dry)
	if dry.Version != 0 || len(dry.Gained) != 2 {
		t.Fatalf("restore dry run %+v", dry)
	}
	var restored wire.SetPolicyResponse
	e.admin(http.MethodPost, wire.PathPolicyVersions+"/1/restore", nil, http.StatusOK, &restored)
	if restored.Version != 3 || len(restored.Gained) != 2 || len(restored.Lost) != 0 {
		t.Fatalf("restore %+v", restored)
	}
	e.admin(http.MethodGet, wire.PathPolicy, nil, http.StatusOK, &cur)
	if cur.Version != 3 || cur.Source != refPolicy || !strings.Contains(cur.Author, "restoring version 1") {
		t.Fatalf("after restore %+v", cur)
	}
	e.admin(http.MethodPost, wire.PathPolicyVersions+"/7/restore", nil, http.StatusNotFound, nil)

	// if_version guards against lost updates.
	e.admin(http.MethodPost, wire.PathPolicy, wire.SetPolicyRequest{Source: webAPIPolicy, IfVersion: 2}, http.StatusConflict, nil)
	e.admin(http.MethodPost, wire.PathPolicy, wire.SetPolicyRequest{Source: webAPIPolicy, IfVersion: 2, DryRun: true}, http.StatusConflict, nil)
	var ok wire.SetPolicyResponse
	e.admin(http.MethodPost, wire.PathPolicy, wire.SetPolicyRequest{Source: webAPIPolicy, IfVersion: 3}, http.StatusOK, &ok)
	if ok.Version != 4 {
		t.Fatalf("save with the right if_version %+v", ok)
	}
	// A dry run stores nothing.
	e.admin(http.MethodPost, wire.PathPolicy, wire.SetPolicyRequest{Source: refPolicy, DryRun: true}, http.StatusOK, &dry)
	if dry.Version != 0 || len(dry.Gained) != 2 {
		t.Fatalf("dry run %+v", dry)
	}
	e.admin(http.MethodGet, wire.PathPolicy, nil, http.StatusOK, &cur)
	if cur.Version != 4 {
		t.Fatalf("a dry run saved a version: current %d", cur.Version)
	}
}

func TestInvalidPolicyIsRefusedAndTheOldOneStays(t *testing.T) {
	e := newEnv(t, nil)
	h := e.enrollHosts()
	e.setPolicy(refPolicy)
	api := e.follow(h.api)
	m0, _ := e.st.Meta(context.Background())
	tests := []struct {
		name       string
		src        string
		line, col  int // 0: any place
		msgContain string
	}{
		{name: "syntax", src: "{\n  \"rules\": [\n    {\"src\": [\"tag:web\"] \"dst\": []},\n  ],\n}", line: 3},
		{name: "unknown tag", src: "{\n  \"tagOwners\": {\"tag:web\": []},\n  \"rules\": [{\"src\": [\"tag:wbe\"], \"dst\": [\"tag:web:22\"]}],\n}",
			line: 3, msgContain: "tag:wbe"},
		{name: "port out of range", src: "{\n  \"tagOwners\": {\"tag:web\": []},\n  \"rules\": [{\"src\": [\"tag:web\"], \"dst\": [\"tag:web:70000\"]}],\n}", line: 3},
		{name: "star", src: "{\n  \"tagOwners\": {\"tag:web\": []},\n  \"rules\": [{\"src\": [\"*\"], \"dst\": [\"tag:web:22\"]}],\n}", line: 3},
		{name: "failing test", src: strings.Replace(refPolicy, `"deny": ["svc:db", "tag:db:22"]`, `"deny": ["svc:api"]`, 1), msgContain: "test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, dry := range []bool{true, false} {
				status, b := e.do(e.client, http.MethodPost, wire.PathPolicy, e.adminHdr(), mustJSON(wire.SetPolicyRequest{Source: tt.src, DryRun: dry}))
				if status != http.StatusBadRequest {
					t.Fatalf("dry=%v: status %d %s, want 400", dry, status, b)
				}
				pe := policyError(t, b)
				if pe.Line == 0 || pe.Column == 0 || tt.line != 0 && pe.Line != tt.line {
					t.Errorf("dry=%v: %+v: want line %d and a column", dry, pe, tt.line)
				}
				if !strings.Contains(pe.Message, "line") || tt.msgContain != "" && !strings.Contains(pe.Message, tt.msgContain) {
					t.Errorf("dry=%v: message %q", dry, pe.Message)
				}
			}
		})
	}
	var cur wire.PolicyInfo
	e.admin(http.MethodGet, wire.PathPolicy, nil, http.StatusOK, &cur)
	if cur.Version != 1 || cur.Source != refPolicy {
		t.Fatalf("current policy after refusals: version %d", cur.Version)
	}
	if m, _ := e.st.Meta(context.Background()); m.NetmapVersion != m0.NetmapVersion {
		t.Fatalf("refused policies moved the netmap version %d -> %d", m0.NetmapVersion, m.NetmapVersion)
	}
	// api heard nothing in between: its next delta follows its first map
	// directly, and only adds the newcomer.
	key := e.createKey(wire.CreateKeyRequest{Tags: []wire.Tag{"tag:web"}})
	e.enroll(key.Key, "web2")
	prev := api.nm.Version
	d := api.next()
	if d.PrevVersion != prev || len(d.Upsert) != 1 || d.Upsert[0].Name != "web2" || d.RulesChanged {
		t.Fatalf("api's next delta %+v", d)
	}
}

func TestPolicyRequestsAreBoundedAndStrict(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name, body string
		want       int
	}{
		{"unknown field", `{"source":"{}","force":true}`, 400},
		{"negative if_version", `{"source":"{}","if_version":-1}`, 400},
		{"oversized", `{"source":"` + strings.Repeat(" ", wire.MaxPolicyRequestBytes) + `"}`, 413},
		// Bigger than other requests may be, within the policy limit.
		{"policy over 64 KiB", `{"source":"` + strings.Repeat(" ", 100<<10) + `{}","dry_run":true}`, 200},
		{"empty body", ``, 400},
	}
	for _, tt := range tests {
		status, b := e.do(e.client, http.MethodPost, wire.PathPolicy, e.adminHdr(), []byte(tt.body))
		if tt.want >= 400 {
			errorMessage(t, b)
		}
		if status != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, status, tt.want)
		}
	}
	e.admin(http.MethodGet, wire.PathPolicy, nil, http.StatusNotFound, nil)
}
