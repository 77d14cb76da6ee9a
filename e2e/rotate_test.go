package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/wire"
)

// rotateMaxGap bounds the silence a rotation may cause in a 20 ms echo
// stream: generous, since the point is that the stream survives.
const rotateMaxGap = 5 * time.Second

// TestRotatedKeyReachesPeerAndStreamSurvives runs `latch rotate` on each
// end of an established TCP stream in turn: the other end's `wg show`
// lists the new key and not the old one, the node's own interface has the
// new key, and the stream carries on without breaking.
func TestRotatedKeyReachesPeerAndStreamSurvives(t *testing.T) {
	bins := setup(t)
	n := netns.NewNetwork(t)
	coordHost := n.AddHost("coord")
	hosts := []*netns.Host{n.AddHost("a"), n.AddHost("b")}
	for _, h := range hosts {
		startEcho(t, h)
	}
	m := cluster.StartMesh(t, bins, coordHost, hosts...)
	a, b := m.Agents[0], m.Agents[1]

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startCounterStreamTo(t, a.Host, netip.AddrPortFrom(b.OverlayIPv4(t), echoPort), 20*time.Millisecond)
	s.waitFor(t, 25, 10*time.Second)

	for _, tc := range []struct{ rotating, peer *cluster.Agent }{{a, b}, {b, a}} {
		name := tc.rotating.Host.Name
		before, err := tc.peer.WGPeers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		res, err := tc.rotating.CLI(ctx, "rotate", "--json")
		if err != nil {
			t.Fatalf("latch rotate on %s: %v", name, err)
		}
		var rr struct {
			OldKey wire.NodePublic `json:"old_key"`
			NewKey wire.NodePublic `json:"new_key"`
		}
		if err := json.Unmarshal([]byte(res.Stdout), &rr); err != nil {
			t.Fatalf("latch rotate --json on %s: %v: %q", name, err, res.Stdout)
		}
		if !slices.Equal(before, []string{rr.OldKey.String()}) || rr.NewKey == rr.OldKey {
			t.Fatalf("rotate on %s: old %v new %v; %s listed %v before", name, rr.OldKey, rr.NewKey, tc.peer.Host.Name, before)
		}
		netns.Eventually(t, 10*time.Second, func() error {
			got, err := tc.peer.WGPeers(ctx)
			if err != nil {
				return err
			}
			if !slices.Equal(got, []string{rr.NewKey.String()}) {
				return fmt.Errorf("wg show on %s lists %v, want only %s's new key %v", tc.peer.Host.Name, got, name, rr.NewKey)
			}
			return nil
		})
		own, err := tc.rotating.Host.Run(ctx, "wg", "show", tc.rotating.Iface, "public-key")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(own.Stdout); got != rr.NewKey.String() {
			t.Errorf("%s's interface key %s, want the new %v", name, got, rr.NewKey)
		}
		nodes, err := m.Coord.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, nd := range nodes {
			if nd.Hostname == name && nd.Key != rr.NewKey {
				t.Errorf("coordinator records %v for %s, want %v", nd.Key, name, rr.NewKey)
			}
		}

		// The stream goes on over the new key.
		s.waitFor(t, 50, 10*time.Second)
		_, gap, err := s.state()
		if err != nil {
			t.Fatalf("stream after rotating %s: %v", name, err)
		}
		metric(t, "rotate_stream_max_gap_ms", gap.Milliseconds(), "rotated="+name, "stream=20ms_tcp_echo")
		if gap > rotateMaxGap {
			t.Errorf("the stream was silent for %v around the rotation of %s (bound %v)", gap, name, rotateMaxGap)
		}
	}
	s.stop()
}
