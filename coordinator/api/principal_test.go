package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// The console calls the API handler in-process with a Principal: the
// same routes, scope checks and audit records as a token.
func TestPrincipalIsAuthorizedLikeAToken(t *testing.T) {
	e := newEnv(t, nil)
	h := e.srv.Config.Handler
	call := func(p *Principal, method, path, body string) int {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if p != nil {
			req = req.WithContext(WithPrincipal(req.Context(), *p))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	auditor := &Principal{ID: "console-0a1b", User: "audrey@example.com", Scopes: []string{wire.ScopeNodesRead, wire.ScopeAuditRead}}
	if got := call(auditor, http.MethodGet, wire.PathNodes, ""); got != http.StatusOK {
		t.Errorf("auditor lists nodes: %d, want 200", got)
	}
	if got := call(auditor, http.MethodPost, wire.PathKeys, `{}`); got != http.StatusForbidden {
		t.Errorf("auditor creates a key: %d, want 403", got)
	}
	keys, err := e.st.EnrollmentKeys(context.Background())
	if err != nil || len(keys) != 0 {
		t.Fatalf("keys after a refused create: %d, %v", len(keys), err)
	}
	recs, err := e.st.AuditRecords(context.Background(), store.AuditFilter{Action: audit.TokenDenied})
	if err != nil || len(recs) != 1 || !strings.Contains(recs[0].Actor, "console-0a1b") || !strings.Contains(recs[0].Actor, "audrey@example.com") {
		t.Fatalf("refusal audit records: %+v, %v", recs, err)
	}
	admin := &Principal{ID: "console-2c3d", User: "olive@example.com", Scopes: []string{wire.ScopeAdmin}}
	if got := call(admin, http.MethodPost, wire.PathKeys, `{}`); got != http.StatusCreated {
		t.Errorf("admin creates a key: %d, want 201", got)
	}
	recs, _ = e.st.AuditRecords(context.Background(), store.AuditFilter{Action: audit.KeyCreate})
	if len(recs) != 1 || !strings.Contains(recs[0].Actor, "olive@example.com") {
		t.Errorf("key creation audited as %+v", recs)
	}
	// Without a principal (or with an empty one) the bearer token rules.
	if got := call(nil, http.MethodGet, wire.PathNodes, ""); got != http.StatusUnauthorized {
		t.Errorf("no principal, no token: %d, want 401", got)
	}
	if got := call(&Principal{Scopes: []string{wire.ScopeAdmin}}, http.MethodGet, wire.PathNodes, ""); got != http.StatusUnauthorized {
		t.Errorf("principal without an ID: %d, want 401", got)
	}
}
