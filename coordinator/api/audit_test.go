package api

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/wire"
)

// lastAudit returns the newest audit record.
func (e *env) lastAudit() wire.AuditRecord {
	e.t.Helper()
	var recs []wire.AuditRecord
	e.admin(http.MethodGet, wire.PathAudit+"?limit=1", nil, http.StatusOK, &recs)
	if len(recs) != 1 {
		e.t.Fatalf("audit log has %d newest records, want 1", len(recs))
	}
	return recs[0]
}

// summary decodes a record's summary.
func summary(t *testing.T, r wire.AuditRecord) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Summary, &m); err != nil {
		t.Fatalf("record %d summary %s: %v", r.Seq, r.Summary, err)
	}
	return m
}

func TestEveryStateChangeIsAudited(t *testing.T) {
	e := newEnv(t, nil)
	var (
		secrets []string // every secret handed out, to look for in the log
		key     wire.CreateKeyResponse
		stg     *agent
		h       hosts
		alice   string
		aliceID string
		req     wire.AccessRequest
	)
	tokenIDOf := func(tok string) string {
		pt, err := ParseToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		return pt.ID
	}
	steps := []struct {
		name       string
		do         func()
		action     string
		actor      func() string // substring of the actor
		target     func() string // substring of the target
		summaryHas map[string]any
	}{
		{"key create", func() {
			key = e.createKey(wire.CreateKeyRequest{Tags: []wire.Tag{"tag:staging"}, Description: "staging box"})
			secrets = append(secrets, key.Key)
		}, audit.KeyCreate, func() string { return "user:bootstrap" }, func() string { return "key:" + key.Info.ID },
			map[string]any{"description": "staging box"}},
		{"enrollment", func() { stg = e.enroll(key.Key, "staging") }, audit.NodeEnroll,
			func() string { return "key:" + key.Info.ID }, func() string { return "node:" + string(stg.resp.Node.ID) },
			map[string]any{"hostname": "staging"}},
		{"token create", func() {
			alice = e.createToken("alice@example.com", wire.ScopeAccessApprove)
			aliceID = tokenIDOf(alice)
			secrets = append(secrets, alice)
		}, audit.TokenCreate, func() string { return "user:bootstrap" }, func() string { return "token:" + aliceID },
			map[string]any{"user": "alice@example.com"}},
		{"policy save", func() {
			h = e.enrollHosts()
			if resp := e.setPolicy(refPolicy); len(resp.Gained) != 3 || len(resp.Lost) != 0 {
				t.Fatalf("policy save gained %d, lost %d pairs; the summary below expects 3 and 0", len(resp.Gained), len(resp.Lost))
			}
		}, audit.PolicySave, func() string { return "user:bootstrap" }, func() string { return "policy" },
			map[string]any{"version": float64(1), "gained": float64(3), "lost": float64(0)}},
		{"policy restore", func() {
			e.admin(http.MethodPost, wire.PathPolicyVersions+"/1/restore", nil, http.StatusOK, nil)
		}, audit.PolicyRestore, func() string { return "user:bootstrap" }, func() string { return "policy" },
			map[string]any{"version": float64(2), "restored_from": float64(1)}},
		{"access request", func() {
			req = e.requestAccess(h.ci, wire.NodeAccessRequest{To: "svc:db", Port: 5432, Duration: 30 * time.Minute, Reason: "INC-42"}, http.StatusCreated)
		}, audit.AccessRequest, func() string { return "node:" + string(h.ci.resp.Node.ID) }, func() string { return "access:" + req.ID },
			map[string]any{"to": "svc:db", "reason": "INC-42"}},
		{"access approve", func() {
			e.as(alice, http.MethodPost, wire.PathAccess+"/"+req.ID+"/approve", wire.DecideRequest{Reason: "ok"}, http.StatusOK, nil)
		}, audit.AccessApprove, func() string { return "token:" + aliceID + " user:alice@example.com" }, func() string { return "access:" + req.ID },
			map[string]any{"policy_version": float64(2)}},
		{"access revoke", func() {
			e.as(alice, http.MethodPost, wire.PathAccess+"/"+req.ID+"/revoke", wire.DecideRequest{Reason: "done"}, http.StatusOK, nil)
		}, audit.AccessRevoke, func() string { return "user:alice@example.com" }, func() string { return "access:" + req.ID },
			map[string]any{"reason": "done"}},
		{"access deny", func() {
			req = e.requestAccess(h.ci, wire.NodeAccessRequest{To: "svc:db", Duration: time.Hour, Reason: "again"}, http.StatusCreated)
			e.as(alice, http.MethodPost, wire.PathAccess+"/"+req.ID+"/deny", wire.DecideRequest{Reason: "no"}, http.StatusOK, nil)
		}, audit.AccessDeny, func() string { return "user:alice@example.com" }, func() string { return "access:" + req.ID }, nil},
		{"access auto-approve", func() {
			req = e.requestAccess(h.ci, wire.NodeAccessRequest{To: "svc:staging", Duration: time.Hour, Reason: "deploy"}, http.StatusCreated)
		}, audit.AccessAutoApprove, func() string { return "node:" + string(h.ci.resp.Node.ID) }, func() string { return "access:" + req.ID }, nil},
		{"access expiry", func() {
			e.clock.Advance(time.Hour + time.Second)
			deadline := time.Now().Add(10 * time.Second)
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for e.lastAudit().Action != audit.AccessExpire {
				if time.Now().After(deadline) {
					t.Fatal("grant expiry not audited within 10s")
				}
				<-tick.C
			}
		}, audit.AccessExpire, func() string { return audit.ActorSystem }, func() string { return req.ID }, nil},
		{"token revoke", func() {
			e.admin(http.MethodDelete, wire.PathTokens+"/"+aliceID, nil, http.StatusNoContent, nil)
		}, audit.TokenRevoke, func() string { return "user:bootstrap" }, func() string { return "token:" + aliceID }, nil},
		{"key revoke", func() {
			e.admin(http.MethodDelete, wire.PathKeys+"/"+key.Info.ID, nil, http.StatusNoContent, nil)
		}, audit.KeyRevoke, func() string { return "user:bootstrap" }, func() string { return "key:" + key.Info.ID }, nil},
		{"node delete", func() {
			e.admin(http.MethodDelete, wire.PathNodes+"/staging", nil, http.StatusNoContent, nil)
		}, audit.NodeDelete, func() string { return "user:bootstrap" }, func() string { return "node:" + string(stg.resp.Node.ID) },
			map[string]any{"name": "staging"}},
		{"call outside the token's scope", func() {
			reader := e.createToken("bob@example.com", wire.ScopeNodesRead)
			secrets = append(secrets, reader)
			e.as(reader, http.MethodDelete, wire.PathNodes+"/web", nil, http.StatusForbidden, nil)
		}, audit.TokenDenied, func() string { return "user:bob@example.com" }, func() string { return "DELETE " + wire.PathNodes + "/web" },
			map[string]any{"scope": wire.ScopeNodesWrite}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do()
			r := e.lastAudit()
			if r.Action != st.action || !strings.Contains(r.Actor, st.actor()) || !strings.Contains(r.Target, st.target()) {
				t.Fatalf("newest record %+v; want action %s, actor ~%q, target ~%q", r, st.action, st.actor(), st.target())
			}
			got := summary(t, r)
			for k, v := range st.summaryHas {
				if fmt.Sprint(got[k]) != fmt.Sprint(v) {
					t.Errorf("summary %s: %s = %v, want %v", r.Summary, k, got[k], v)
				}
			}
		})
	}

	// The whole chain verifies.
	var all []wire.AuditRecord
	e.admin(http.MethodGet, wire.PathAudit+"?after_seq=0&limit=1000", nil, http.StatusOK, &all)
	var vr wire.AuditVerifyResponse
	e.admin(http.MethodGet, wire.PathAuditVerify, nil, http.StatusOK, &vr)
	if !vr.OK || vr.Count != int64(len(all)) || vr.Head != all[len(all)-1].Hash {
		t.Fatalf("verify %+v with %d records", vr, len(all))
	}

	// No secret appears anywhere in the log, neither whole nor its secret part.
	dump, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	// Secret parts are parsed, never split on "_": base64url secrets may
	// contain it, and a short fragment would match by chance.
	for _, s := range secrets {
		var secret string
		if ak, err := wire.ParseAuthKey(s); err == nil {
			secret = ak.Secret
		} else if tok, err := ParseToken(s); err == nil {
			secret = tok.Secret
		} else {
			t.Fatalf("handed-out secret %s... is neither an enrollment key nor a token", s[:12])
		}
		if strings.Contains(string(dump), s) || strings.Contains(string(dump), secret) {
			t.Errorf("audit log holds the secret of %s...", s[:12])
		}
	}
}

func TestAuditReadNeedsItsScope(t *testing.T) {
	e := newEnv(t, nil)
	reader := e.createToken("auditor@example.com", wire.ScopeAuditRead)
	nodes := e.createToken("ops@example.com", wire.ScopeNodesRead)
	var recs []wire.AuditRecord
	e.as(reader, http.MethodGet, wire.PathAudit, nil, http.StatusOK, &recs)
	e.as(reader, http.MethodGet, wire.PathAuditVerify, nil, http.StatusOK, nil)
	e.as(nodes, http.MethodGet, wire.PathAudit, nil, http.StatusForbidden, nil)
	e.as(reader, http.MethodGet, wire.PathAudit+"?action="+audit.TokenDenied, nil, http.StatusOK, &recs)
	if len(recs) != 1 || !strings.Contains(recs[0].Actor, "ops@example.com") {
		t.Fatalf("denied records %+v", recs)
	}
	for _, bad := range []string{"?limit=0", "?limit=5000", "?since=yesterday", "?after_seq=-1"} {
		e.as(reader, http.MethodGet, wire.PathAudit+bad, nil, http.StatusBadRequest, nil)
	}
}

func TestAuditVerifyCatchesAnEditInTheDatabaseFile(t *testing.T) {
	e := newEnv(t, nil)
	for range 3 {
		e.createKey(wire.CreateKeyRequest{})
	}
	db, err := sql.Open("sqlite", e.dbPath())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_log SET summary = '{"reusable":true}' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	var vr wire.AuditVerifyResponse
	e.admin(http.MethodGet, wire.PathAuditVerify, nil, http.StatusOK, &vr)
	if vr.OK || vr.BrokenSeq != 2 || vr.Count != 1 || !strings.Contains(vr.Problem, "edited") {
		t.Fatalf("verify after an edit: %+v", vr)
	}
}
