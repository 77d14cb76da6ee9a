package coordinator

import (
	"bytes"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/latchnet/latch/coordinator/netmap"
	"github.com/latchnet/latch/wire"
)

// TestNetmapKeyIsCreatedOncePrivateAndHandedToNodes checks the netmap
// signing key: created 0600 on first start, the same after a restart, and
// its public half in every EnrollResponse.
func TestNetmapKeyIsCreatedOncePrivateAndHandedToNodes(t *testing.T) {
	cfg := testConfig(t)
	enrollKey := func(r *running) []byte {
		t.Helper()
		var key wire.CreateKeyResponse
		if s := r.call(t, http.MethodPost, wire.PathKeys, r.admin(), wire.CreateKeyRequest{}, &key); s != http.StatusCreated {
			t.Fatalf("create key: %d", s)
		}
		return r.enroll(t, key.Key, "n").NetmapKey
	}
	r := start(t, cfg, slog.New(slog.DiscardHandler))
	path := filepath.Join(cfg.DataDir, netmap.KeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", netmap.KeyFile, fi.Mode().Perm())
	}
	first := enrollKey(r)
	if len(first) != 32 {
		t.Fatalf("EnrollResponse.NetmapKey has %d bytes", len(first))
	}
	token := r.token
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r2 := start(t, cfg, slog.New(slog.DiscardHandler))
	r2.token = token // the bootstrap token file is read at start; keep using the first
	if again := enrollKey(r2); !bytes.Equal(again, first) {
		t.Error("netmap key changed across a restart")
	}
}
