package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchnet/latch/agent/localapi"
)

// TestServeAnswersThenCleansUp runs latchd without an identity (so no
// interface is created): the socket answers with mode 0600, and shutdown
// removes it.
func TestServeAnswersThenCleansUp(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Socket = filepath.Join(dir, "run", "latchd.sock")
	cfg.Interface = "lttestd0"

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.DiscardHandler)) }()

	c := localapi.NewClient(cfg.Socket)
	deadline := time.Now().Add(10 * time.Second)
	var st localapi.Status
	for {
		var err error
		if st, err = c.Status(context.Background()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("latchd never answered: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("serve returned early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if st.State != localapi.StateNeedsLogin {
		t.Errorf("state = %q, want %q", st.State, localapi.StateNeedsLogin)
	}
	fi, err := os.Stat(cfg.Socket)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, %v", fi.Mode().Perm(), err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	if _, err := os.Stat(cfg.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind after shutdown: %v", err)
	}
}

func TestServeRefusesCorruptState(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.StateDir = dir
	cfg.Socket = filepath.Join(dir, "latchd.sock")
	os.WriteFile(filepath.Join(dir, "identity.json"), []byte("{"), 0o600)
	if err := serve(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("serve started on a corrupt state dir")
	}
	if _, err := os.Stat(cfg.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Error("socket created although startup failed")
	}
}
