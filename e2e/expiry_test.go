package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/agent/localapi"
	"github.com/latchnet/latch/e2e/cluster"
	"github.com/latchnet/latch/e2e/netns"
	"github.com/latchnet/latch/wire"
)

// expiryIn is the key lifetime the expiry test gives a node: long enough
// to see both agents learn it and to stop the coordinator before it.
const expiryIn = 25 * time.Second

// fullStatus is `latch status --json` on a, with every field.
func fullStatus(ctx context.Context, a *cluster.Agent) (localapi.Status, error) {
	var st localapi.Status
	res, err := a.CLI(ctx, "status", "--json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil {
		return st, fmt.Errorf("decoding latch status --json on %s: %w", a.Host.Name, err)
	}
	return st, nil
}

// TestExpiryDropsNodeFromPeersWithCoordinatorDown gives node b a key
// that expires in expiryIn (`latch nodes expiry b --in`), waits until both
// agents know it, kills the coordinator and checks that at the expiry
// instant a drops b from WireGuard on its own clock (`wg show` no longer
// lists it, traffic stops both ways) and b, whose own key expired, drops
// every peer and says so in `latch status`.
func TestExpiryDropsNodeFromPeersWithCoordinatorDown(t *testing.T) {
	bins := setup(t)
	n := netns.NewNetwork(t)
	coordHost := n.AddHost("coord")
	ha, hb := n.AddHost("a"), n.AddHost("b")
	startEcho(t, ha)
	startEcho(t, hb)
	m := cluster.StartMesh(t, bins, coordHost, ha, hb)
	coord, a, b := m.Coord, m.Agents[0], m.Agents[1]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	bst, err := b.Status(ctx)
	if err != nil || bst.Self == nil {
		t.Fatalf("status of b: %+v: %v", bst, err)
	}
	bID, bKey, bAddr, aAddr := bst.Self.ID, bst.Self.Key, b.OverlayIPv4(t), a.OverlayIPv4(t)

	res, err := coord.Admin(ctx, "nodes", "expiry", bID, "--in", expiryIn.String(), "--json")
	if err != nil {
		t.Fatalf("latch nodes expiry: %v", err)
	}
	var info wire.NodeInfo
	if err := json.Unmarshal([]byte(res.Stdout), &info); err != nil || info.KeyExpiry.IsZero() {
		t.Fatalf("latch nodes expiry --json: %v: key expiry %v in %s", err, info.KeyExpiry, res.Stdout)
	}
	expiry := info.KeyExpiry
	t.Logf("b's key expires at %s", expiry.Format(time.RFC3339Nano))

	// Both agents learn the expiry from the coordinator.
	netns.Eventually(t, 15*time.Second, func() error {
		ast, err := fullStatus(ctx, a)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(ast.Peers, func(p localapi.Peer) bool { return string(p.ID) == bID })
		if i < 0 || !ast.Peers[i].KeyExpiry.Equal(expiry) {
			return fmt.Errorf("a does not know b's expiry yet: %+v", ast.Peers)
		}
		bst, err := fullStatus(ctx, b)
		if err != nil {
			return err
		}
		if !bst.KeyExpiry.Equal(expiry) {
			return fmt.Errorf("b does not know its own expiry yet: %v", bst.KeyExpiry)
		}
		return nil
	})

	// The coordinator goes away before the expiry; the data plane stays.
	coord.Kill(t)
	if err := tcpEcho(ctx, ha, bAddr, []byte("before expiry\n")); err != nil {
		t.Fatalf("a -> b before the expiry, coordinator down: %v", err)
	}
	if left := time.Until(expiry); left < 2*time.Second {
		t.Fatalf("setup took too long: only %v left before the expiry", left)
	}

	// a drops b at the expiry, on its own clock.
	var gone time.Time
	netns.Eventually(t, time.Until(expiry)+15*time.Second, func() error {
		keys, err := a.WGPeers(ctx)
		if err != nil {
			return err
		}
		if slices.Contains(keys, bKey) {
			return fmt.Errorf("wg show on a still lists b (%v to the expiry)", time.Until(expiry).Round(time.Millisecond))
		}
		gone = time.Now()
		return nil
	})
	late := gone.Sub(expiry)
	metric(t, "key_expiry_to_peer_dropped_ms", late.Milliseconds(), "how=wg_show_polled", "coordinator=down")
	if late < -500*time.Millisecond {
		t.Errorf("a dropped b %v before its key expired", -late)
	}

	// Traffic stops both ways.
	tctx, tcancel := context.WithTimeout(ctx, 3*time.Second)
	err = tcpEcho(tctx, ha, bAddr, []byte("after expiry\n"))
	tcancel()
	if err == nil {
		t.Error("a -> b still works after b's key expired")
	}
	if err := ping(ctx, hb, aAddr); err == nil {
		t.Error("b -> a ping still works after b's key expired")
	}

	// b's own key expired: it drops every peer and says so.
	netns.Eventually(t, 10*time.Second, func() error {
		keys, err := b.WGPeers(ctx)
		if err != nil {
			return err
		}
		if len(keys) != 0 {
			return fmt.Errorf("wg show on b lists %d peers after its own key expired", len(keys))
		}
		return nil
	})
	bst2, err := fullStatus(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if !bst2.KeyExpired || len(bst2.Peers) != 0 {
		t.Errorf("b's status: key_expired=%v peers=%d, want expired and none", bst2.KeyExpired, len(bst2.Peers))
	}
	out, err := b.CLI(ctx, "status")
	if err != nil {
		t.Fatal(err)
	}
	if want := "node key expired " + expiry.UTC().Format(time.RFC3339) + "; ask an admin to extend it or re-enroll"; !strings.Contains(out.Stdout, want) {
		t.Errorf("latch status on b does not say %q:\n%s", want, out.Stdout)
	}
}
