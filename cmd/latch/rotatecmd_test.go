package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/wire"
)

// rotatingAgent is a fakeAgent that can rotate its key.
type rotatingAgent struct {
	*fakeAgent
	rotations int
	err       error
}

func (r *rotatingAgent) Rotate(ctx context.Context) (localapi.RotateResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return localapi.RotateResponse{}, r.err
	}
	r.rotations++
	return localapi.RotateResponse{OldKey: wire.NodePublic{1}, NewKey: wire.NodePublic{2}}, nil
}

func serveRotatingAgent(t *testing.T, r *rotatingAgent) map[string]string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "latchd.sock")
	ln, err := localapi.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: localapi.NewHandler(r, nil)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return map[string]string{"LATCH_SOCKET": sock}
}

func TestRotateCommand(t *testing.T) {
	r := &rotatingAgent{fakeAgent: &fakeAgent{}}
	vars := serveRotatingAgent(t, r)
	oldKey, newKey := wire.NodePublic{1}, wire.NodePublic{2}

	code, out, errOut := cli(t, vars, "rotate")
	want := "WireGuard key rotated\nold public key: " + oldKey.String() + "\nnew public key: " + newKey.String() + "\n"
	if code != 0 || out != want || errOut != "" {
		t.Errorf("rotate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	code, out, _ = cli(t, vars, "rotate", "--json")
	var resp localapi.RotateResponse
	if code != 0 || json.Unmarshal([]byte(out), &resp) != nil || resp.NewKey != newKey || resp.OldKey != oldKey {
		t.Errorf("rotate --json: exit %d, %q", code, out)
	}
	if r.rotations != 2 {
		t.Errorf("%d rotations, want 2", r.rotations)
	}

	if code, _, _ := cli(t, vars, "rotate", "extra"); code != 2 {
		t.Errorf("rotate with an argument: exit %d, want 2", code)
	}

	r.mu.Lock()
	r.err = localapi.Errorf(http.StatusConflict, "latch is down: run latch up first")
	r.mu.Unlock()
	code, _, errOut = cli(t, vars, "rotate")
	if code != 1 || !strings.Contains(errOut, "latch is down") {
		t.Errorf("rotate while down: exit %d, stderr %q", code, errOut)
	}
	oneLineErr(t, errOut)

	// An agent without rotation says so.
	code, _, errOut = cli(t, serveAgent(t, &fakeAgent{}), "rotate")
	if code != 1 || !strings.Contains(errOut, "cannot rotate") {
		t.Errorf("rotate on an agent without rotation: exit %d, stderr %q", code, errOut)
	}
}
