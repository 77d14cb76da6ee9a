package api

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/expiry"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// identityPolicy: web reaches api with a modern agent only; api reaches
// web's ssh; quarantined nodes reach only the remediation server.
const identityPolicy = `{
  "tagOwners": {"tag:web": [], "tag:api": [], "tag:remedy": [], "tag:extra": []},
  "services": {"svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]}},
  "postures": {"posture:modern": ["agent_version >= 0.4", "os == linux"]},
  "rules": [
    {"src": ["tag:web"], "srcPosture": ["posture:modern"], "dst": ["svc:api"]},
    {"src": ["status:quarantined"], "dst": ["tag:remedy:443"]},
  ],
}`

func posture(version string) *wire.Posture {
	return &wire.Posture{OS: "linux", AgentVersion: version, Kernel: "6.1.0"}
}

// enrollWith enrolls a fresh agent with a request changed by mod.
func (e *env) enrollWith(authKey, host string, mod func(*wire.EnrollRequest)) *agent {
	e.t.Helper()
	a := newAgent()
	req := a.request(authKey, host)
	if mod != nil {
		mod(&req)
	}
	status, b := e.do(e.client, http.MethodPost, wire.PathEnroll, agentHdr(), mustJSON(req))
	if status != http.StatusOK {
		e.t.Fatalf("enroll %s: %d %s", host, status, b)
	}
	if err := json.Unmarshal(b, &a.resp); err != nil {
		e.t.Fatal(err)
	}
	a.client = e.httpClient(a.tlsCert(a.resp.Certificate))
	return a
}

func (e *env) nodeInfo(ref string) wire.NodeInfo {
	e.t.Helper()
	var ni wire.NodeInfo
	e.admin(http.MethodGet, wire.PathNodes+"/"+ref, nil, http.StatusOK, &ni)
	return ni
}

// watcher keeps an agent's netmap up to date from its stream.
type watcher struct {
	s  *stream
	nm *wire.Netmap
}

func (e *env) watch(a *agent) *watcher {
	e.t.Helper()
	s, status := e.openStream(a.client)
	if status != http.StatusOK {
		e.t.Fatalf("stream: %d", status)
	}
	m := s.next()
	if m.Netmap == nil {
		e.t.Fatalf("first message %+v", m)
	}
	return &watcher{s: s, nm: m.Netmap}
}

// until applies messages until cond holds on the netmap.
func (f *watcher) until(what string, cond func(*wire.Netmap) bool) {
	f.s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(f.nm) {
		if time.Now().After(deadline) {
			f.s.t.Fatalf("netmap never reached: %s (have %v)", what, peerNames(f.nm))
		}
		m := f.s.next()
		if m.Delta == nil {
			continue
		}
		nm, err := f.nm.Apply(m.Delta)
		if err != nil {
			f.s.t.Fatal(err)
		}
		f.nm = nm
	}
}

func peerNames(nm *wire.Netmap) []string {
	var out []string
	for _, p := range nm.Peers {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

func sees(names ...string) func(*wire.Netmap) bool {
	slices.Sort(names)
	return func(nm *wire.Netmap) bool { return slices.Equal(peerNames(nm), names) }
}

func (e *env) hasAudit(action, target, key string, val any) bool {
	e.t.Helper()
	recs, err := e.st.AuditRecords(context.Background(), store.AuditFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range recs {
		if r.Action != action || r.Target != target {
			continue
		}
		var sum map[string]any
		if err := json.Unmarshal([]byte(r.Summary), &sum); err != nil {
			e.t.Fatal(err)
		}
		if key == "" || sum[key] == val {
			return true
		}
	}
	return false
}

func TestCreateKeyNodeExpiryAndMaxUses(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.NodeKeyExpiry = 48 * time.Hour })
	tests := []struct {
		name   string
		req    wire.CreateKeyRequest
		status int
		msg    string
		want   wire.KeyInfo // NodeExpiry, NoNodeExpiry, MaxUses when created
	}{
		{"default node expiry", wire.CreateKeyRequest{}, 201, "", wire.KeyInfo{NodeExpiry: 48 * time.Hour}},
		{"own node expiry", wire.CreateKeyRequest{NodeExpiry: 720 * time.Hour}, 201, "", wire.KeyInfo{NodeExpiry: 720 * time.Hour}},
		{"tagged, never", wire.CreateKeyRequest{NoNodeExpiry: true, Tags: []wire.Tag{"tag:web"}}, 201, "", wire.KeyInfo{NoNodeExpiry: true}},
		{"reusable, bounded", wire.CreateKeyRequest{Reusable: true, MaxUses: 5}, 201, "", wire.KeyInfo{NodeExpiry: 48 * time.Hour, MaxUses: 5}},
		{"untagged never", wire.CreateKeyRequest{NoNodeExpiry: true}, 400, "needs a key with tags", wire.KeyInfo{}},
		{"both", wire.CreateKeyRequest{NoNodeExpiry: true, NodeExpiry: time.Hour, Tags: []wire.Tag{"tag:web"}}, 400, "exclude each other", wire.KeyInfo{}},
		{"negative", wire.CreateKeyRequest{NodeExpiry: -time.Hour}, 400, "must not be negative", wire.KeyInfo{}},
		{"too short", wire.CreateKeyRequest{NodeExpiry: time.Second}, 400, "shorter than the minimum", wire.KeyInfo{}},
		{"too long", wire.CreateKeyRequest{NodeExpiry: MaxNodeKeyExpiry + time.Hour}, 400, "exceeds the maximum", wire.KeyInfo{}},
		{"max uses on a one-off key", wire.CreateKeyRequest{MaxUses: 3}, 400, "needs a reusable key", wire.KeyInfo{}},
		{"negative max uses", wire.CreateKeyRequest{Reusable: true, MaxUses: -1}, 400, "max_uses -1", wire.KeyInfo{}},
	}
	created := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := e.do(e.client, http.MethodPost, wire.PathKeys, e.adminHdr(), mustJSON(tt.req))
			if status != tt.status {
				t.Fatalf("status %d %s, want %d", status, b, tt.status)
			}
			if status != 201 {
				if msg := errorMessage(t, b); !strings.Contains(msg, tt.msg) {
					t.Fatalf("message %q, want %q", msg, tt.msg)
				}
				return
			}
			created++
			var resp wire.CreateKeyResponse
			json.Unmarshal(b, &resp)
			got := resp.Info
			if got.NodeExpiry != tt.want.NodeExpiry || got.NoNodeExpiry != tt.want.NoNodeExpiry || got.MaxUses != tt.want.MaxUses {
				t.Fatalf("key info %+v, want %+v", got, tt.want)
			}
		})
	}
	var keys []wire.KeyInfo
	e.admin(http.MethodGet, wire.PathKeys, nil, http.StatusOK, &keys)
	if len(keys) != created {
		t.Fatalf("%d keys listed, want %d: a refused request created one", len(keys), created)
	}
}

func TestEnrolledNodeExpiryFollowsItsKey(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.NodeKeyExpiry = 48 * time.Hour })
	tests := []struct {
		name string
		req  wire.CreateKeyRequest
		want time.Duration // 0: never
	}{
		{"coordinator default", wire.CreateKeyRequest{}, 48 * time.Hour},
		{"key's own", wire.CreateKeyRequest{NodeExpiry: 720 * time.Hour}, 720 * time.Hour},
		{"never", wire.CreateKeyRequest{NoNodeExpiry: true, Tags: []wire.Tag{"tag:web"}}, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := e.createKey(tt.req)
			before := e.clock.Now()
			a := e.enrollWith(key.Key, "n"+string(rune('a'+i)), func(r *wire.EnrollRequest) { r.Posture = posture("0.4.2") })
			after := e.clock.Now()
			ke := a.resp.Node.KeyExpiry
			switch {
			case tt.want == 0 && !ke.IsZero():
				t.Fatalf("key expiry %v, want never", ke)
			case tt.want != 0 && (ke.Before(before.Add(tt.want).Truncate(time.Microsecond)) || ke.After(after.Add(tt.want))):
				t.Fatalf("key expiry %v, want enrollment + %s", ke, tt.want)
			}
			ni := e.nodeInfo(string(a.resp.Node.ID))
			cert, _ := x509.ParseCertificate(a.resp.Certificate)
			if !ni.KeyExpiry.Equal(ke) || ni.Expired || ni.Posture == nil || ni.Posture.AgentVersion != "0.4.2" ||
				!ni.CertExpires.Equal(cert.NotAfter) {
				t.Fatalf("node info %+v (cert expires %v)", ni, cert.NotAfter)
			}
		})
	}
}

func TestMaxUsesBoundsConcurrentEnrollments(t *testing.T) {
	e := newEnv(t, nil)
	key := e.createKey(wire.CreateKeyRequest{Reusable: true, MaxUses: 5})
	const racers = 20
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
		msgs     = map[string]int{}
	)
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, b := e.do(e.client, http.MethodPost, wire.PathEnroll, agentHdr(), mustJSON(newAgent().request(key.Key, "racer")))
			mu.Lock()
			defer mu.Unlock()
			statuses[status]++
			if status != 200 {
				msgs[errorMessage(t, b)]++
			}
		}()
	}
	wg.Wait()
	if statuses[200] != 5 || statuses[401] != racers-5 || msgs["enrollment key used up: it reached its max uses"] != racers-5 {
		t.Fatalf("statuses %v, messages %v; want 5 enrolled and %d used up", statuses, msgs, racers-5)
	}
	if c := e.nodeCount(); c != 5 {
		t.Fatalf("%d nodes, want 5", c)
	}
	var keys []wire.KeyInfo
	e.admin(http.MethodGet, wire.PathKeys, nil, http.StatusOK, &keys)
	if keys[0].Uses != 5 || keys[0].MaxUses != 5 {
		t.Fatalf("key %+v", keys[0])
	}
}

// TestExpiredNodeIsCutOffButKeepsItsStream sets a node's expiry to now:
// its peers drop it, it gets an empty netmap with its key expiry, its
// renewal is refused; a later expiry brings it back.
func TestExpiredNodeIsCutOffButKeepsItsStream(t *testing.T) {
	e := newEnv(t, nil)
	e.setPolicy(meshPolicy)
	key := e.createKey(wire.CreateKeyRequest{Reusable: true, Tags: []wire.Tag{"tag:mesh"}})
	a, b := e.enroll(key.Key, "alpha"), e.enroll(key.Key, "beta")
	fa, fb := e.watch(a), e.watch(b)
	fa.until("alpha sees beta", sees("beta"))
	fb.until("beta sees alpha", sees("alpha"))

	var ni wire.NodeInfo
	e.admin(http.MethodPost, wire.PathNodes+"/alpha"+wire.PathNodeExpiry, wire.SetNodeExpiryRequest{Now: true}, http.StatusOK, &ni)
	if !ni.Expired || ni.KeyExpiry.IsZero() {
		t.Fatalf("node info after expire: %+v", ni)
	}
	fb.until("beta drops alpha", sees())
	fa.until("alpha sees nobody, knowing its expiry", func(nm *wire.Netmap) bool {
		return len(nm.Peers) == 0 && len(nm.Rules) == 0 && nm.Self.KeyExpiry.Equal(ni.KeyExpiry)
	})
	status, body := e.do(a.client, http.MethodPost, wire.PathRenew, agentHdr(), mustJSON(wire.RenewRequest{CSR: a.csr()}))
	if status != http.StatusForbidden || !strings.HasPrefix(errorMessage(t, body), "node key expired") {
		t.Fatalf("renewal of an expired node: %d %s, want 403 node key expired", status, body)
	}
	// Its stream still opens, with the empty netmap.
	if s, status := e.openStream(a.client); status != http.StatusOK || len(s.next().Netmap.Peers) != 0 {
		t.Fatalf("expired node's stream: %d", status)
	}
	if !e.hasAudit(store.AuditNodeExpiry, "node:"+string(a.resp.Node.ID), "now", true) {
		t.Error("no node.expiry audit record")
	}

	ni = wire.NodeInfo{}
	e.admin(http.MethodPost, wire.PathNodes+"/alpha"+wire.PathNodeExpiry, wire.SetNodeExpiryRequest{In: 720 * time.Hour}, http.StatusOK, &ni)
	if ni.Expired {
		t.Fatalf("extended node still expired: %+v", ni)
	}
	fb.until("beta sees alpha again, with its new expiry", func(nm *wire.Netmap) bool {
		return len(nm.Peers) == 1 && nm.Peers[0].KeyExpiry.Equal(ni.KeyExpiry)
	})
	if status, body := e.do(a.client, http.MethodPost, wire.PathRenew, agentHdr(), mustJSON(wire.RenewRequest{CSR: a.csr()})); status != http.StatusOK {
		t.Fatalf("renewal after extension: %d %s", status, body)
	}
}

func TestSweeperExpiresANodeAtItsInstant(t *testing.T) {
	e := newEnv(t, nil)
	sw := expiry.Start(expiry.Config{Store: e.st, Notify: e.hub.Notify, Clock: e.clock})
	t.Cleanup(sw.Close)
	e.setPolicy(meshPolicy)
	short := e.createKey(wire.CreateKeyRequest{Reusable: true, Tags: []wire.Tag{"tag:mesh"}, NodeExpiry: 10 * time.Minute})
	long := e.createKey(wire.CreateKeyRequest{Reusable: true, Tags: []wire.Tag{"tag:mesh"}})
	a, b := e.enroll(short.Key, "alpha"), e.enroll(long.Key, "beta")
	sw.Kick()
	fb := e.watch(b)
	fb.until("beta sees alpha", sees("alpha"))
	if p := fb.nm.Peers[0]; !p.KeyExpiry.Equal(a.resp.Node.KeyExpiry) {
		t.Fatalf("beta's entry for alpha has key expiry %v, want %v", p.KeyExpiry, a.resp.Node.KeyExpiry)
	}
	e.clock.Advance(10 * time.Minute)
	fb.until("beta drops alpha at its expiry", sees())
	if !e.nodeInfo("alpha").Expired {
		t.Fatal("alpha not shown expired")
	}
	if !e.hasAudit(store.AuditNodeExpire, "node:"+string(a.resp.Node.ID), "", nil) {
		t.Error("no node.expire audit record")
	}
}

func TestSetNodeExpiryRefusalsChangeNothing(t *testing.T) {
	e := newEnv(t, nil)
	key := e.createKey(wire.CreateKeyRequest{Reusable: true})
	e.enroll(key.Key, "laptop")
	before := e.nodeInfo("laptop")
	tests := []struct {
		name   string
		node   string
		req    any
		status int
		msg    string
	}{
		{"nothing set", "laptop", wire.SetNodeExpiryRequest{}, 400, "exactly one of"},
		{"two set", "laptop", wire.SetNodeExpiryRequest{Now: true, In: time.Hour}, 400, "exactly one of"},
		{"negative", "laptop", wire.SetNodeExpiryRequest{In: -time.Hour}, 400, "positive"},
		{"too long", "laptop", wire.SetNodeExpiryRequest{In: MaxNodeKeyExpiry + time.Hour}, 400, "exceeds the maximum"},
		{"never on an untagged node", "laptop", wire.SetNodeExpiryRequest{Never: true}, 400, "only tagged"},
		{"unknown field", "laptop", map[string]any{"forever": true}, 400, "unknown field"},
		{"unknown node", "nosuch", wire.SetNodeExpiryRequest{Now: true}, 404, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := e.do(e.client, http.MethodPost, wire.PathNodes+"/"+tt.node+wire.PathNodeExpiry, e.adminHdr(), mustJSON(tt.req))
			if status != tt.status || !strings.Contains(errorMessage(t, b), tt.msg) {
				t.Fatalf("%d %s, want %d %q", status, b, tt.status, tt.msg)
			}
		})
	}
	if after := e.nodeInfo("laptop"); !after.KeyExpiry.Equal(before.KeyExpiry) || after.Expired {
		t.Fatalf("refused requests changed the node: %+v", after)
	}
}

// TestQuarantineLeavesOnlyRemediation quarantines web: at once it loses
// api and reaches only the remediation server; unquarantine restores it.
func TestQuarantineLeavesOnlyRemediation(t *testing.T) {
	e := newEnv(t, nil)
	e.setPolicy(identityPolicy)
	mk := func(tag wire.Tag) string { return e.createKey(wire.CreateKeyRequest{Tags: []wire.Tag{tag}}).Key }
	modern := func(r *wire.EnrollRequest) { r.Posture = posture("0.4.2") }
	web := e.enrollWith(mk("tag:web"), "web", modern)
	api := e.enrollWith(mk("tag:api"), "api", modern)
	remedy := e.enrollWith(mk("tag:remedy"), "remedy", modern)
	fw, fa, fr := e.watch(web), e.watch(api), e.watch(remedy)
	fw.until("web sees api", sees("api"))
	fa.until("api sees web", sees("web"))

	var ni wire.NodeInfo
	e.admin(http.MethodPost, wire.PathNodes+"/web"+wire.PathNodeQuarantine, wire.QuarantineRequest{Reason: "EDR: malware found"}, http.StatusOK, &ni)
	if !ni.Quarantined || ni.QuarantineReason != "EDR: malware found" {
		t.Fatalf("node info %+v", ni)
	}
	fw.until("quarantined web sees only remedy", sees("remedy"))
	fa.until("api drops web", sees())
	fr.until("remedy admits web", sees("web"))
	if !e.hasAudit(store.AuditNodeQuarantine, "node:"+string(web.resp.Node.ID), "reason", "EDR: malware found") {
		t.Error("no node.quarantine audit record with the reason")
	}

	ni = wire.NodeInfo{}
	e.admin(http.MethodPost, wire.PathNodes+"/web"+wire.PathNodeUnquarantine, nil, http.StatusOK, &ni)
	if ni.Quarantined || ni.QuarantineReason != "" {
		t.Fatalf("node info after unquarantine %+v", ni)
	}
	fw.until("web sees api again", sees("api"))
	fa.until("api sees web again", sees("web"))
	fr.until("remedy drops web", sees())
	if !e.hasAudit(store.AuditNodeUnquarantine, "node:"+string(web.resp.Node.ID), "", nil) {
		t.Error("no node.unquarantine audit record")
	}
	// A bad reason is refused and changes nothing.
	status, b := e.do(e.client, http.MethodPost, wire.PathNodes+"/web"+wire.PathNodeQuarantine, e.adminHdr(),
		mustJSON(wire.QuarantineRequest{Reason: "a\x00b"}))
	if status != http.StatusBadRequest || e.nodeInfo("web").Quarantined {
		t.Fatalf("bad reason: %d %s", status, b)
	}
}

// TestPostureChangeReevaluatesAccessAtOnce: web's old agent may not reach
// api; its update to a new version opens access with the next delta.
func TestPostureChangeReevaluatesAccessAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	e.setPolicy(identityPolicy)
	web := e.enrollWith(e.createKey(wire.CreateKeyRequest{Tags: []wire.Tag{"tag:web"}}).Key, "web",
		func(r *wire.EnrollRequest) { r.Posture = posture("0.3.9") })
	api := e.enroll(e.createKey(wire.CreateKeyRequest{Tags: []wire.Tag{"tag:api"}}).Key, "api")
	fw, fa := e.watch(web), e.watch(api)
	if len(fw.nm.Peers) != 0 || len(fa.nm.Peers) != 0 {
		t.Fatalf("old agent: web sees %v, api sees %v", peerNames(fw.nm), peerNames(fa.nm))
	}
	update := func(p *wire.Posture) {
		t.Helper()
		if status, b := e.do(web.client, http.MethodPost, wire.PathUpdate, agentHdr(), mustJSON(wire.UpdateRequest{Posture: p})); status != http.StatusNoContent {
			t.Fatalf("posture update: %d %s", status, b)
		}
	}
	steps := []struct {
		name    string
		posture *wire.Posture
		sees    []string
		changed bool
	}{
		{"upgrade", posture("0.4.2"), []string{"api"}, true},
		{"same again", posture("0.4.2"), []string{"api"}, false},
		{"downgrade", posture("0.3.0"), nil, true},
		{"other os", &wire.Posture{OS: "windows", AgentVersion: "0.5.0"}, nil, true},
		{"back", posture("0.5.0"), []string{"api"}, true},
	}
	for _, st := range steps {
		v0, _ := e.st.Meta(context.Background())
		update(st.posture)
		v1, _ := e.st.Meta(context.Background())
		if changed := v1.NetmapVersion > v0.NetmapVersion; changed != st.changed {
			t.Fatalf("%s: version bumped %v, want %v", st.name, changed, st.changed)
		}
		fw.until(st.name+": web's peers", sees(st.sees...))
		if ni := e.nodeInfo("web"); ni.Posture == nil || *ni.Posture != *st.posture {
			t.Fatalf("%s: node info posture %+v", st.name, ni.Posture)
		}
	}
	if !e.hasAudit(store.AuditNodePosture, "node:"+string(web.resp.Node.ID), wire.PostureAgentVersion, "0.4.2") {
		t.Error("no node.posture audit record")
	}
	// A bad posture is refused and stores nothing.
	status, b := e.do(web.client, http.MethodPost, wire.PathUpdate, agentHdr(),
		mustJSON(wire.UpdateRequest{Posture: &wire.Posture{OS: "linux\n", AgentVersion: "1"}}))
	if status != http.StatusBadRequest || e.nodeInfo("web").Posture.AgentVersion != "0.5.0" {
		t.Fatalf("bad posture: %d %s", status, b)
	}
}

func TestSetTagsMustBeKnownToThePolicy(t *testing.T) {
	e := newEnv(t, nil)
	e.setPolicy(identityPolicy)
	web := e.enrollWith(e.createKey(wire.CreateKeyRequest{Tags: []wire.Tag{"tag:web"}}).Key, "web",
		func(r *wire.EnrollRequest) { r.Posture = posture("0.4.2") })
	e.enroll(e.createKey(wire.CreateKeyRequest{Tags: []wire.Tag{"tag:api"}}).Key, "api")
	fw := e.watch(web)
	fw.until("web sees api", sees("api"))
	tests := []struct {
		name   string
		tags   []wire.Tag
		status int
		msg    string
		sees   []string
	}{
		{"unknown tag", []wire.Tag{"tag:web", "tag:nosuch"}, 400, "unknown tag tag:nosuch", []string{"api"}},
		{"malformed tag", []wire.Tag{"web"}, 400, "tag", []string{"api"}},
		{"known tags", []wire.Tag{"tag:extra", "tag:web"}, 200, "", []string{"api"}},
		{"lose tag:web", []wire.Tag{"tag:extra"}, 200, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := e.do(e.client, http.MethodPost, wire.PathNodes+"/web"+wire.PathNodeTags, e.adminHdr(), mustJSON(wire.SetNodeTagsRequest{Tags: tt.tags}))
			if status != tt.status {
				t.Fatalf("%d %s, want %d", status, b, tt.status)
			}
			if status != 200 {
				if msg := errorMessage(t, b); !strings.Contains(msg, tt.msg) {
					t.Fatalf("message %q, want %q", msg, tt.msg)
				}
			} else {
				var ni wire.NodeInfo
				json.Unmarshal(b, &ni)
				if !slices.Equal(ni.Tags, tt.tags) {
					t.Fatalf("tags %v, want %v", ni.Tags, tt.tags)
				}
			}
			fw.until("web's peers", sees(tt.sees...))
		})
	}
	if !e.hasAudit(store.AuditNodeTags, "node:"+string(web.resp.Node.ID), "", nil) {
		t.Error("no node.tags audit record")
	}
}

func TestIdentityRoutesNeedNodesWrite(t *testing.T) {
	e := newEnv(t, nil)
	// The writer owns tag:web, so it may also assign it.
	e.setPolicy(strings.Replace(identityPolicy, `"tag:web": []`, `"tag:web": ["writer@example.com"]`, 1))
	e.enroll(e.createKey(wire.CreateKeyRequest{Tags: []wire.Tag{"tag:web"}}).Key, "web")
	reader := e.createToken("reader@example.com", wire.ScopeNodesRead)
	writer := e.createToken("writer@example.com", wire.ScopeNodesWrite)
	routes := []struct {
		path string
		body any
	}{
		{wire.PathNodeQuarantine, wire.QuarantineRequest{Reason: "x"}},
		{wire.PathNodeUnquarantine, nil},
		{wire.PathNodeExpiry, wire.SetNodeExpiryRequest{In: time.Hour}},
		{wire.PathNodeTags, wire.SetNodeTagsRequest{Tags: []wire.Tag{"tag:web"}}},
	}
	for _, rt := range routes {
		t.Run(rt.path, func(t *testing.T) {
			e.as(reader, http.MethodPost, wire.PathNodes+"/web"+rt.path, rt.body, http.StatusForbidden, nil)
			e.as(writer, http.MethodPost, wire.PathNodes+"/web"+rt.path, rt.body, http.StatusOK, nil)
		})
	}
}

func TestRenewalRecordsTheCertificateExpiry(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.NodeCertLifetime = 2 * time.Hour })
	a := e.enroll(e.createKey(wire.CreateKeyRequest{}).Key, "renewer")
	e.clock.Advance(30 * time.Minute)
	status, b := e.do(a.client, http.MethodPost, wire.PathRenew, agentHdr(), mustJSON(wire.RenewRequest{CSR: a.csr()}))
	if status != http.StatusOK {
		t.Fatalf("renew: %d %s", status, b)
	}
	var rr wire.RenewResponse
	json.Unmarshal(b, &rr)
	cert, _ := x509.ParseCertificate(rr.Certificate)
	if ni := e.nodeInfo("renewer"); !ni.CertExpires.Equal(cert.NotAfter) {
		t.Fatalf("cert expires %v, want the renewed certificate's %v", ni.CertExpires, cert.NotAfter)
	}
}
