package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchnet/latch/agent/localapi"
)

// ephemeralAgent is fakeAgent whose node is ephemeral.
type ephemeralAgent struct{ fakeAgent }

func (f *ephemeralAgent) Status(ctx context.Context) (localapi.Status, error) {
	st, err := f.fakeAgent.Status(ctx)
	st.Self.Ephemeral = true
	return st, err
}

func TestDownSaysWhetherTheNodeLeft(t *testing.T) {
	tests := []struct {
		name    string
		backend localapi.Backend
		want    string
	}{
		{"permanent", &fakeAgent{}, "latch is down (still enrolled"},
		{"ephemeral", &ephemeralAgent{}, "left the network and was deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "latchd.sock")
			ln, err := localapi.Listen(sock)
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: localapi.NewHandler(tt.backend, nil)}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			vars := map[string]string{"LATCH_SOCKET": sock}
			code, out, errOut := cli(t, vars, "down")
			if code != 0 || !strings.Contains(out, tt.want) || errOut != "" {
				t.Fatalf("down: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, tt.want)
			}
		})
	}
}
