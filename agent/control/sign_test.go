package control_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/latchnet/latch/agent/control"
	"github.com/latchnet/latch/agent/internal/fakecoord"
	"github.com/latchnet/latch/wire"
)

// TestStreamRefusesBadlySignedMessages sends a good full map, then one
// message that must be refused: the stream ends with ErrBadSignature and
// the callback never sees the refused map.
func TestStreamRefusesBadlySignedMessages(t *testing.T) {
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name string
		// msg builds the bad message from the node's map at version 10.
		msg func(s *fakecoord.Server, id wire.NodeID, nm *wire.Netmap) wire.StreamMessage
	}{
		{"unsigned delta", func(_ *fakecoord.Server, _ wire.NodeID, _ *wire.Netmap) wire.StreamMessage {
			return wire.StreamMessage{Type: wire.MsgDelta, Delta: &wire.Delta{PrevVersion: 10, Version: 11}, Signature: []byte{}}
		}},
		{"delta signed by another key", func(_ *fakecoord.Server, id wire.NodeID, nm *wire.Netmap) wire.StreamMessage {
			d := &wire.Delta{PrevVersion: 10, Version: 11}
			next, _ := nm.Apply(d)
			return wire.StreamMessage{Type: wire.MsgDelta, Delta: d, Signature: fakecoord.SignNetmap(otherKey, id, next)}
		}},
		{"delta whose signature covers another result", func(s *fakecoord.Server, id wire.NodeID, nm *wire.Netmap) wire.StreamMessage {
			d := &wire.Delta{PrevVersion: 10, Version: 11, Remove: []wire.NodeID{"n-gone"}}
			next, _ := nm.Apply(&wire.Delta{PrevVersion: 10, Version: 11})
			next.Rules = nil // the signer meant "no rules"; the delta keeps them
			return wire.StreamMessage{Type: wire.MsgDelta, Delta: d, Signature: fakecoord.SignNetmap(s.NetmapKey, id, next)}
		}},
		{"delta with a corrupted signature", func(s *fakecoord.Server, id wire.NodeID, nm *wire.Netmap) wire.StreamMessage {
			d := &wire.Delta{PrevVersion: 10, Version: 11}
			next, _ := nm.Apply(d)
			sig := fakecoord.SignNetmap(s.NetmapKey, id, next)
			sig[10] ^= 0x40
			return wire.StreamMessage{Type: wire.MsgDelta, Delta: d, Signature: sig}
		}},
		{"full map signed for another node", func(s *fakecoord.Server, _ wire.NodeID, nm *wire.Netmap) wire.StreamMessage {
			nm.Version = 12
			return wire.StreamMessage{Type: wire.MsgNetmap, Netmap: nm, Signature: fakecoord.SignNetmap(s.NetmapKey, "n-other", nm)}
		}},
		{"full map signed for another version", func(s *fakecoord.Server, id wire.NodeID, nm *wire.Netmap) wire.StreamMessage {
			nm.Version = 12
			sig := fakecoord.SignNetmap(s.NetmapKey, id, nm)
			nm.Version = 13
			return wire.StreamMessage{Type: wire.MsgNetmap, Netmap: nm, Signature: sig}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakecoord.New(t, fakecoord.Options{})
			c, en := streamClient(t, s, 0)
			done, seen := runStream(context.Background(), c)
			st := nextStream(t, s)
			nm := s.Netmap(en.Node.ID)
			nm.Version = 10
			st.Send(wire.StreamMessage{Type: wire.MsgNetmap, Netmap: nm})
			<-seen
			st.SendAsIs(tt.msg(s, en.Node.ID, atVersion(s.Netmap(en.Node.ID), 10)))
			r := waitResult(t, done)
			if !errors.Is(r.err, wire.ErrBadSignature) {
				t.Fatalf("Stream error = %v, want ErrBadSignature", r.err)
			}
			if want := []uint64{10}; !equal(r.versions, want) {
				t.Errorf("versions passed on = %v, want %v", r.versions, want)
			}
		})
	}
}

func atVersion(nm *wire.Netmap, v uint64) *wire.Netmap {
	nm.Version = v
	return nm
}

// TestEnrollWithoutNetmapKeyFails: a node that could verify no netmap
// must not enroll.
func TestEnrollWithoutNetmapKeyFails(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{OmitNetmapKey: true})
	_, err := control.Enroll(context.Background(), s.URL, enrollReq(newNodeKeys(t), s.AuthKey))
	if err == nil || !strings.Contains(err.Error(), "netmap signing key") {
		t.Fatalf("Enroll = %v, want a refusal naming the netmap key", err)
	}
	s2 := fakecoord.New(t, fakecoord.Options{})
	en, err := control.Enroll(context.Background(), s2.URL, enrollReq(newNodeKeys(t), s2.AuthKey))
	if err != nil || !en.NetmapKey.Equal(s2.NetmapKey.Public()) {
		t.Fatalf("Enroll = %+v, %v; want the coordinator's netmap key", en, err)
	}
}
