package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/latchnet/latch/coordinator/store"
)

// The editor's live check runs the API's dry run: errors come with their
// place, a valid policy with its pair counts, nothing is saved, and it
// needs a CSRF token and the policy:write scope like saving.
func TestPolicyIsCheckedAsItIsTyped(t *testing.T) {
	e := newEnv(t, nil)
	e.setup()
	admin := e.signIn("ada", store.RoleAdmin)
	check := func(b *browser, form url.Values) (int, policyCheck) {
		t.Helper()
		w := b.do(http.MethodPost, Prefix+"/policy/check", form)
		var out policyCheck
		if w.Code == http.StatusOK || w.Header().Get("Content-Type") == "application/json" {
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatalf("answer %d %q: %v", w.Code, w.Body, err)
			}
		}
		return w.Code, out
	}

	bad := "{\n  \"rules\": [\n    {\"src\": [\"tag:nope\"], \"dst\": [\"tag:nope:22\"]},\n  ],\n}"
	code, got := check(admin, url.Values{"csrf": {admin.csrf()}, "source": {bad}})
	if code != http.StatusOK || got.OK || got.Line != 3 || got.Column == 0 || !strings.Contains(got.Error, "tag:nope") {
		t.Fatalf("invalid policy: %d %+v", code, got)
	}
	code, got = check(admin, url.Values{"csrf": {admin.csrf()}, "source": {`{"rules": []}`}})
	if code != http.StatusOK || !got.OK || got.Error != "" {
		t.Fatalf("valid policy: %d %+v", code, got)
	}
	// Nothing was saved by either check.
	if vs, err := e.st.Policies(context.Background()); err != nil || len(vs) != 0 {
		t.Errorf("after two checks %d policy versions are stored (%v), want 0", len(vs), err)
	}
	// Without the CSRF token: refused before the API sees it.
	if w := admin.do(http.MethodPost, Prefix+"/policy/check", url.Values{"source": {`{"rules": []}`}}); w.Code != http.StatusForbidden {
		t.Errorf("check without CSRF: %d, want 403", w.Code)
	}
	// An auditor may not check (or save) policies: the API refuses it.
	aud := e.signIn("audrey", store.RoleAuditor)
	if code, _ := check(aud, url.Values{"csrf": {aud.csrf()}, "source": {`{"rules": []}`}}); code != http.StatusForbidden {
		t.Errorf("auditor check: %d, want 403", code)
	}
}
