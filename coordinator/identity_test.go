package coordinator

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// TestCoordinatorWiresNodeKeyExpiry checks that New hands the configured
// default to the API and runs the expiry sweeper: an expiry set a moment
// ahead is swept without anyone else touching the node.
func TestCoordinatorWiresNodeKeyExpiry(t *testing.T) {
	cfg := testConfig(t)
	cfg.NodeKeyExpiry = 72 * time.Hour
	r := start(t, cfg, slog.New(slog.DiscardHandler))
	var key wire.CreateKeyResponse
	if s := r.call(t, http.MethodPost, wire.PathKeys, r.admin(), wire.CreateKeyRequest{}, &key); s != http.StatusCreated {
		t.Fatalf("create key: %d", s)
	}
	if key.Info.NodeExpiry != 72*time.Hour {
		t.Fatalf("key's effective node expiry %v, want the configured 72h", key.Info.NodeExpiry)
	}
	before := time.Now()
	n := r.enroll(t, key.Key, "n1")
	if d := n.Node.KeyExpiry.Sub(before); d < 72*time.Hour-time.Second || d > 72*time.Hour+time.Minute {
		t.Fatalf("enrolled node's key expiry %v after enrollment, want 72h", d)
	}
	// The sweeper marks the node expired in the store at its expiry,
	// a moment from now, with nobody else touching it.
	var ni wire.NodeInfo
	if s := r.call(t, http.MethodPost, wire.PathNodes+"/n1"+wire.PathNodeExpiry, r.admin(), wire.SetNodeExpiryRequest{In: 300 * time.Millisecond}, &ni); s != http.StatusOK {
		t.Fatalf("set expiry: %d", s)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		sn, err := r.c.store.Node(context.Background(), n.Node.ID)
		if err != nil {
			t.Fatal(err)
		}
		if sn.Expired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sweeper never marked the node expired")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
