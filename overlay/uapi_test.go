package overlay

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestClearStaleSocket(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr error
		remains bool
	}{
		{"no socket", func(t *testing.T, path string) {}, nil, false},
		{"socket of a killed process", func(t *testing.T, path string) {
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			l.SetUnlinkOnClose(false) // what SIGKILL leaves behind
			l.Close()
		}, nil, false},
		{"socket served by a live process", func(t *testing.T, path string) {
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}, ErrSocketInUse, true},
		{"plain file in the way", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, string(rune('a'+i))+".sock")
			tt.setup(t, path)
			err := clearStaleSocket(path)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("clearStaleSocket = %v, want %v", err, tt.wantErr)
			}
			if _, err := os.Lstat(path); (err == nil) != tt.remains {
				t.Errorf("socket file remains: %v, want %v", err == nil, tt.remains)
			}
		})
	}
}

func TestOverlayMTU(t *testing.T) {
	tests := []struct {
		underlay int
		ipv6     bool
		want     int
	}{
		{1400, false, 1340},
		{1400, true, 1320},
		{1500, false, 1440},
		{1500, true, 1420},
		{9001, false, 8941},
	}
	for _, tt := range tests {
		if got := OverlayMTU(tt.underlay, tt.ipv6); got != tt.want {
			t.Errorf("OverlayMTU(%d, ipv6=%v) = %d, want %d", tt.underlay, tt.ipv6, got, tt.want)
		}
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Interface: ""},
		{Interface: "a-name-longer-than-15"},
		{Interface: "has/slash"},
		{Interface: "lt000000", MTU: 100},
	} {
		if e, err := New(o); err == nil {
			e.Close()
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}
