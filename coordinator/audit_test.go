package coordinator

import (
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/wire"
)

// TestAuditLogCoversBootstrapAndHoldsNoSecret runs a whole coordinator:
// the bootstrap token, a key and an enrollment leave records, the chain
// verifies across a restart, and no secret is in the database files.
func TestAuditLogCoversBootstrapAndHoldsNoSecret(t *testing.T) {
	cfg := testConfig(t)
	r := start(t, cfg, slog.New(slog.DiscardHandler))
	var key wire.CreateKeyResponse
	if s := r.call(t, http.MethodPost, wire.PathKeys, r.admin(), wire.CreateKeyRequest{Reusable: true}, &key); s != http.StatusCreated {
		t.Fatalf("create key: %d", s)
	}
	n := r.enroll(t, key.Key, "n1")
	var recs []wire.AuditRecord
	if s := r.call(t, http.MethodGet, wire.PathAudit, r.admin(), nil, &recs); s != http.StatusOK {
		t.Fatalf("audit list: %d", s)
	}
	want := []struct{ actor, action, target string }{
		{audit.ActorSystem, audit.TokenCreate, "token:"},
		{"user:" + BootstrapUser, audit.KeyCreate, "key:" + key.Info.ID},
		{"key:" + key.Info.ID, audit.NodeEnroll, "node:" + string(n.Node.ID)},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d audit records, want %d: %+v", len(recs), len(want), recs)
	}
	for i, w := range want {
		if !strings.Contains(recs[i].Actor, w.actor) || recs[i].Action != w.action || !strings.HasPrefix(recs[i].Target, w.target) {
			t.Errorf("record %d = %+v, want %+v", i+1, recs[i], w)
		}
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	r2 := start(t, cfg, slog.New(slog.DiscardHandler))
	r2.token = r.token
	if s := r2.call(t, http.MethodPost, wire.PathKeys, r2.admin(), wire.CreateKeyRequest{}, nil); s != http.StatusCreated {
		t.Fatalf("create key after restart: %d", s)
	}
	var vr wire.AuditVerifyResponse
	if s := r2.call(t, http.MethodGet, wire.PathAuditVerify, r2.admin(), nil, &vr); s != http.StatusOK || !vr.OK || vr.Count != 4 {
		t.Fatalf("verify after restart: %d %+v", s, vr)
	}
	r2.stop()

	k, _ := wire.ParseAuthKey(key.Key)
	secrets := map[string]string{"bootstrap token": r.token[len(r.token)-43:], "enrollment key": k.Secret}
	files, _ := filepath.Glob(filepath.Join(cfg.DataDir, "latch.db*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for name, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("%s secret found in %s", name, filepath.Base(f))
			}
		}
	}
}
