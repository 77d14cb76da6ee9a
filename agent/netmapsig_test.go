package agent_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/agent/internal/fakecoord"
	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/agent/state"
	"github.com/latchnet/latch/wire"
)

// editCache rewrites the cached netmap file as generic JSON.
func editCache(edit func(c map[string]any)) func(t *testing.T, path string, s *fakecoord.Server, id wire.NodeID) {
	return func(t *testing.T, path string, _ *fakecoord.Server, _ wire.NodeID) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		edit(c)
		if b, err = json.Marshal(c); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func cachedMap(c map[string]any) map[string]any { return c["netmap"].(map[string]any) }

func firstOf(m map[string]any, key string) map[string]any {
	return m[key].([]any)[0].(map[string]any)
}

// TestTamperedNetmapCacheStartsWithNoPeers restarts an enrolled node whose
// cached netmap was changed on disk. The agent must refuse the cache: no
// peer reaches the data plane, the log and `latch status` say why, and
// the first signed map from the coordinator brings the node back.
func TestTamperedNetmapCacheStartsWithNoPeers(t *testing.T) {
	otherPeer, _, _ := ed25519.GenerateKey(rand.Reader)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name   string
		tamper func(t *testing.T, path string, s *fakecoord.Server, id wire.NodeID)
		reason string // in the status error
	}{
		{"peer key edited", editCache(func(c map[string]any) {
			firstOf(cachedMap(c), "peers")["key"] = base64.StdEncoding.EncodeToString(otherPeer)
		}), "signature does not verify"},
		{"rule port edited", editCache(func(c map[string]any) {
			firstOf(firstOf(cachedMap(c), "rules"), "ports")["first"] = 22
		}), "signature does not verify"},
		{"node id swapped", editCache(func(c map[string]any) {
			cachedMap(c)["self"].(map[string]any)["id"] = "n-other"
		}), "not"},
		{"version rolled back", editCache(func(c map[string]any) { cachedMap(c)["version"] = 1 }), "signature does not verify"},
		{"signature corrupted", editCache(func(c map[string]any) {
			sig, _ := base64.StdEncoding.DecodeString(c["signature"].(string))
			sig[0] ^= 1
			c["signature"] = base64.StdEncoding.EncodeToString(sig)
		}), "signature does not verify"},
		{"signature removed", editCache(func(c map[string]any) { delete(c, "signature") }), "unsigned"},
		{"truncated", func(t *testing.T, path string, _ *fakecoord.Server, _ wire.NodeID) {
			b, _ := os.ReadFile(path)
			os.WriteFile(path, b[:len(b)/2], 0o600)
		}, "not a cached netmap"},
		{"another node's map, properly signed", func(t *testing.T, path string, s *fakecoord.Server, id wire.NodeID) {
			nm := s.Netmap(id)
			nm.Self.ID = "n-other"
			b, _ := json.Marshal(map[string]any{"netmap": nm, "signature": fakecoord.SignNetmap(s.NetmapKey, "n-other", nm)})
			os.WriteFile(path, b, 0o600)
		}, "not"},
		{"signed by another key", func(t *testing.T, path string, s *fakecoord.Server, id wire.NodeID) {
			nm := s.Netmap(id)
			b, _ := json.Marshal(map[string]any{"netmap": nm, "signature": fakecoord.SignNetmap(otherKey, id, nm)})
			os.WriteFile(path, b, 0o600)
		}, "signature does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakecoord.New(t, fakecoord.Options{})
			s.AddPeer("db-1", "198.18.0.3:51820")
			dir := t.TempDir()
			h := start(t, dir, nil)
			up := h.upAsync(localapi.UpRequest{Coordinator: s.URL, AuthKey: s.AuthKey})
			st := nextStream(t, s)
			sendNetmap(t, st, s.Netmap(st.Node))
			if r := waitUp(t, up); r.err != nil {
				t.Fatalf("Up: %v", r.err)
			}
			id := st.Node
			h.stop()

			// The untouched cache is trusted (the control case).
			sd, _ := state.Open(dir)
			if nm, err := sd.LoadNetmap(id, h.state().Identity.NetmapKey); err != nil || len(nm.Peers) != 1 {
				t.Fatalf("untampered cache = %v, %v", nm, err)
			}
			tt.tamper(t, filepath.Join(dir, state.FileNetmap), s, id)

			h2 := start(t, dir, nil)
			st2 := nextStream(t, s) // connected, no map yet
			stat := h2.status()
			if !strings.Contains(stat.LastError, "cached netmap refused") || !strings.Contains(stat.LastError, tt.reason) ||
				!strings.Contains(stat.LastError, "no peers") {
				t.Errorf("status error = %q, want the refused cache and %q", stat.LastError, tt.reason)
			}
			if len(stat.Peers) != 0 || len(stat.Rules) != 0 {
				t.Errorf("status shows %d peers, %d rules from a refused cache", len(stat.Peers), len(stat.Rules))
			}
			for _, e := range h2.engines.Engines() {
				for _, c := range e.Configs() {
					if len(c.Peers) != 0 || len(c.Rules) != 0 {
						t.Errorf("data plane got %d peers, %d rules from a refused cache", len(c.Peers), len(c.Rules))
					}
				}
			}
			if logs := h2.logs.String(); !strings.Contains(logs, "refusing cached netmap") {
				t.Errorf("log does not say the cache was refused:\n%s", logs)
			}

			// A signed map from the coordinator restores the node.
			sendNetmap(t, st2, s.Netmap(id))
			waitFor(t, "peers from the signed map", func() bool { return len(h2.status().Peers) == 1 })
			if e := h2.status().LastError; strings.Contains(e, "cached netmap") {
				t.Errorf("status still reports the refused cache after a signed map: %q", e)
			}
			key := h.state().Identity.NetmapKey
			waitFor(t, "the signed map cached", func() bool { // cached just after it is applied
				nm, err := sd.LoadNetmap(id, key)
				return err == nil && nm != nil && len(nm.Peers) == 1
			})
		})
	}
}

// TestBadlySignedStreamMessageIsNotApplied sends a node a message whose
// signature does not hold: the agent drops the stream without touching
// its data plane, its status or its cache, says why, and reconnects.
func TestBadlySignedStreamMessageIsNotApplied(t *testing.T) {
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name string
		msg  func(s *fakecoord.Server, id wire.NodeID, cur *wire.Netmap, extra wire.Node) wire.StreamMessage
	}{
		{"delta with a bad signature", func(s *fakecoord.Server, id wire.NodeID, cur *wire.Netmap, extra wire.Node) wire.StreamMessage {
			d := &wire.Delta{PrevVersion: 10, Version: 11, Upsert: []wire.Peer{{Node: extra}}}
			next, _ := cur.Apply(d)
			sig := fakecoord.SignNetmap(s.NetmapKey, id, next)
			sig[5] ^= 0x80
			return wire.StreamMessage{Type: wire.MsgDelta, Delta: d, Signature: sig}
		}},
		{"unsigned delta", func(_ *fakecoord.Server, _ wire.NodeID, _ *wire.Netmap, extra wire.Node) wire.StreamMessage {
			return wire.StreamMessage{Type: wire.MsgDelta, Delta: &wire.Delta{PrevVersion: 10, Version: 11, Upsert: []wire.Peer{{Node: extra}}}}
		}},
		{"delta signed by another key", func(_ *fakecoord.Server, id wire.NodeID, cur *wire.Netmap, extra wire.Node) wire.StreamMessage {
			d := &wire.Delta{PrevVersion: 10, Version: 11, Upsert: []wire.Peer{{Node: extra}}}
			next, _ := cur.Apply(d)
			return wire.StreamMessage{Type: wire.MsgDelta, Delta: d, Signature: fakecoord.SignNetmap(otherKey, id, next)}
		}},
		{"full map signed for another node", func(s *fakecoord.Server, id wire.NodeID, _ *wire.Netmap, _ wire.Node) wire.StreamMessage {
			nm := s.Netmap(id)
			nm.Version = 11
			return wire.StreamMessage{Type: wire.MsgNetmap, Netmap: nm, Signature: fakecoord.SignNetmap(s.NetmapKey, "n-other", nm)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakecoord.New(t, fakecoord.Options{})
			s.AddPeer("a", "198.18.0.2:51820")
			dir := t.TempDir()
			h := start(t, dir, nil)
			up := h.upAsync(localapi.UpRequest{Coordinator: s.URL, AuthKey: s.AuthKey})
			st := nextStream(t, s)
			cur := s.Netmap(st.Node)
			cur.Version = 10
			sendNetmap(t, st, cur)
			if r := waitUp(t, up); r.err != nil {
				t.Fatalf("Up: %v", r.err)
			}
			sd, _ := state.Open(dir)
			key := h.state().Identity.NetmapKey
			waitFor(t, "version 10 cached", func() bool {
				nm, err := sd.LoadNetmap(st.Node, key)
				return err == nil && nm != nil && nm.Version == 10
			})
			extra := s.AddPeer("b", "198.18.0.4:51820")

			st.SendAsIs(tt.msg(s, st.Node, cur, extra))
			select {
			case <-st.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("agent kept a stream that sent a badly signed message")
			}
			nextStream(t, s) // it reconnects
			if cfgs := h.engine().Configs(); len(cfgs) != 1 || len(cfgs[0].Peers) != 1 {
				t.Errorf("data plane changed by a refused message: %d configs", len(cfgs))
			}
			stat := h.status()
			if stat.NetmapVersion != 10 || len(stat.Peers) != 1 {
				t.Errorf("status after the refused message: version %d, %d peers", stat.NetmapVersion, len(stat.Peers))
			}
			if nm, err := sd.LoadNetmap(st.Node, key); err != nil || nm.Version != 10 {
				t.Errorf("cache after the refused message = %v, %v; want version 10", nm, err)
			}
			waitFor(t, "the reason in the log", func() bool {
				return strings.Contains(h.logs.String(), "signature") && strings.Contains(h.logs.String(), "reconnecting")
			})
		})
	}
}
