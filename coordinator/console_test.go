package coordinator

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The console is mounted at /console on the API's listener, answers only
// to the coordinator's own names, and leaves every other path to the API.
func TestConsoleIsMountedBesideTheAPI(t *testing.T) {
	tests := []struct {
		name     string
		disabled bool
		host     string
		path     string
		want     int
	}{
		{"console-page", false, "localhost:8443", "/console/login", http.StatusSeeOther}, // to setup: no account yet
		{"console-setup", false, "127.0.0.1:8443", "/console/setup", http.StatusOK},
		{"extra-host", false, "proxy.example.com", "/console/setup", http.StatusOK},
		{"server-name", false, "coord.example.com:8443", "/console/setup", http.StatusOK},
		{"foreign-host", false, "evil.example:8443", "/console/setup", http.StatusForbidden},
		{"api-still-served", false, "localhost:8443", "/healthz", http.StatusOK},
		{"disabled", true, "localhost:8443", "/console/setup", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.ServerNames = []string{"coord.example.com"}
			cfg.Console = ConsoleConfig{Disabled: tt.disabled, Hosts: []string{"proxy.example.com"}}
			c, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			req := httptest.NewRequest(http.MethodGet, "https://"+tt.host+tt.path, nil)
			req.Host = tt.host
			w := httptest.NewRecorder()
			c.handler.ServeHTTP(w, req)
			if w.Code != tt.want {
				t.Errorf("GET %s (Host %s): %d, want %d", tt.path, tt.host, w.Code, tt.want)
			}
		})
	}
}
