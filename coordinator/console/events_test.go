package console

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/store"
)

// openEvents opens the live-update stream of b's session on a real HTTP
// server and returns a channel of event names (closed when it ends).
func openEvents(t *testing.T, e *env, b *browser) <-chan string {
	t.Helper()
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+Prefix+"/events", nil)
	req.Host = testHost
	for _, c := range b.cookies {
		req.AddCookie(c)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 16)
	go func() {
		defer close(events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- name
			}
		}
	}()
	return events
}

// next returns the next event name, or "" when the stream ended.
func next(t *testing.T, events <-chan string) string {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no live event within 30s")
		return ""
	}
}

func TestLiveUpdatesFollowTheSessionAndTheConsole(t *testing.T) {
	tests := []struct {
		name string
		end  func(e *env, b *browser)
		// want is the last event before the stream closes ("" for none).
		want string
	}{
		{"sign-out", func(e *env, b *browser) {
			b.do(http.MethodPost, Prefix+"/logout", url.Values{"csrf": {b.csrf()}})
		}, "bye"},
		{"account-disabled", func(e *env, b *browser) {
			e.st.SetConsoleAccountDisabled(context.Background(), "audrey", true)
		}, "bye"},
		{"console-closed", func(e *env, b *browser) { e.con.Close() }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.EventInterval = 20 * time.Millisecond })
			e.setup()
			b := e.signIn("audrey", store.RoleApprover)
			events := openEvents(t, e, b)
			// An approver gets nodes and pending requests at once.
			got := map[string]bool{next(t, events): true, next(t, events): true}
			if !got["nodes"] || !got["access"] {
				t.Fatalf("first events %v, want nodes and access", got)
			}
			tt.end(e, b)
			last := "(none)"
			for ev := range events {
				last = ev
			}
			if tt.want != "" && last != tt.want {
				t.Errorf("last event %q, want %q", last, tt.want)
			}
		})
	}
}

func TestLiveUpdatesNeedASession(t *testing.T) {
	e := newEnv(t, nil)
	e.setup()
	if w := e.browser().do(http.MethodGet, Prefix+"/events", nil); w.Code != http.StatusUnauthorized {
		t.Errorf("events without a session: %d, want 401", w.Code)
	}
}
