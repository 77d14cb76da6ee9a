package agent_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/latchnet/latch/agent"
	"github.com/latchnet/latch/agent/internal/fakecoord"
	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/agent/state"
)

func upEphemeral(t *testing.T, h *harness, s *fakecoord.Server) localapi.UpResponse {
	t.Helper()
	resp, err := h.ag.Up(context.Background(), localapi.UpRequest{Coordinator: s.URL, AuthKey: s.AuthKey, Ephemeral: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	return resp
}

func identityExists(t *testing.T, dir string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(dir, state.FileIdentity))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestDownOfEphemeralNodeLeavesAndForgetsIt(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	dir := t.TempDir()
	h := start(t, dir, nil)
	upEphemeral(t, h, s)
	if st := h.status(); st.Self == nil || !st.Self.Ephemeral {
		t.Fatalf("status does not say ephemeral: %+v", st.Self)
	}
	if err := h.ag.Down(context.Background()); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if got := s.Leaves(); !slices.Equal(got, []string{"down"}) {
		t.Fatalf("leaves %q, want one for down", got)
	}
	if !h.engine().Closed() {
		t.Error("Down left the interface up")
	}
	if st := h.status(); st.State != localapi.StateNeedsLogin {
		t.Errorf("state after an ephemeral down = %q, want %q", st.State, localapi.StateNeedsLogin)
	}
	if identityExists(t, dir) {
		t.Error("the left node's identity is still on disk")
	}
	// Exiting afterwards does not leave again.
	h.stop()
	if n := len(s.Leaves()); n != 1 {
		t.Errorf("%d leaves after exit, want 1", n)
	}
}

func TestPermanentNodeDownAndExitKeepEnrollment(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	dir := t.TempDir()
	h := start(t, dir, nil)
	h.enroll(s)
	if err := h.ag.Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.stop()
	if got := s.Leaves(); len(got) != 0 {
		t.Fatalf("a permanent node left: %q", got)
	}
	if !identityExists(t, dir) {
		t.Fatal("a permanent node lost its identity")
	}
}

func TestEphemeralNodeLeavesOnExit(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	dir := t.TempDir()
	h := start(t, dir, nil)
	upEphemeral(t, h, s)
	h.stop() // what latchd does on SIGTERM and SIGINT
	if got := s.Leaves(); !slices.Equal(got, []string{"agent exit"}) {
		t.Fatalf("leaves %q, want one at exit", got)
	}
	if identityExists(t, dir) {
		t.Error("the left node's identity is still on disk")
	}
}

func TestLeaveIsBoundedWhenTheCoordinatorDoesNotAnswer(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	dir := t.TempDir()
	h := start(t, dir, func(c *agent.Config) { c.LeaveTimeout = 100 * time.Millisecond })
	upEphemeral(t, h, s)
	s.SetLeaveBlackhole(true)
	done := make(chan error, 1)
	go func() { done <- h.ag.Down(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Down: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Down hung on an unanswered leave")
	}
	if identityExists(t, dir) || !h.engine().Closed() {
		t.Error("an unanswered leave kept the identity or the interface")
	}
}

func TestMemoryStateWritesNothingAndEnrollsEphemeral(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	parent := t.TempDir()
	dir := filepath.Join(parent, "state")
	h := start(t, dir, func(c *agent.Config) { c.MemoryState = true })
	// Not asked for: memory state forces it.
	resp := h.enroll(s)
	nodes := s.Nodes()
	if i := slices.IndexFunc(nodes, func(n fakecoord.Node) bool { return n.ID == resp.NodeID }); i < 0 || !nodes[i].Ephemeral {
		t.Fatalf("memory-state node not enrolled as ephemeral: %+v", nodes)
	}
	// Rotation and renewal write state too; one rotation exercises it.
	if st := h.status(); st.State != localapi.StateConnected {
		t.Fatalf("state %q", st.State)
	}
	checkEmpty := func(when string) {
		t.Helper()
		ents, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			t.Fatalf("%s: files created on disk: %v", when, ents)
		}
	}
	checkEmpty("after enrollment")
	h.stop()
	if got := s.Leaves(); !slices.Equal(got, []string{"agent exit"}) {
		t.Fatalf("leaves %q, want one at exit", got)
	}
	checkEmpty("after exit")
}
