package netmap

import (
	"context"
	"sync"
	"testing"
	"time"
)

// gatedSource lets the hub's background load of a snapshot hang while a
// subscriber arrives, the window in which a subscriber used to get the
// previous snapshot.
type gatedSource struct {
	*fakeSource
	mu      sync.Mutex
	gate    chan struct{} // while set, background loads wait on it
	waiting chan struct{} // closed once a load waits on gate
}

func (g *gatedSource) Snapshot(ctx context.Context) (*Snapshot, error) {
	g.mu.Lock()
	gate, waiting := g.gate, g.waiting
	g.gate, g.waiting = nil, nil // only the first load after arming waits
	g.mu.Unlock()
	if gate != nil {
		close(waiting)
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.fakeSource.Snapshot(ctx)
}

func TestSubscribeDuringALoadGetsTheNotifiedChange(t *testing.T) {
	src := &gatedSource{fakeSource: reference(t)}
	h := newTestHub(t, src, 16)
	h.Notify()
	waitVersion(t, h, src.version)

	// A second web node enrolls and the change is notified, but the hub's
	// own load of it hangs.
	gate, waiting := make(chan struct{}), make(chan struct{})
	src.mu.Lock()
	src.gate, src.waiting = gate, waiting
	src.mu.Unlock()
	web2 := testNode(9, "tag:web")
	v := src.change(add(web2))
	h.Notify()
	select {
	case <-waiting:
	case <-time.After(5 * time.Second):
		t.Fatal("the hub never started loading the change")
	}
	defer close(gate)

	// api (which web2 may reach) subscribes now: its first map must be of
	// the new version, listing web2, not the previous one.
	sub, err := h.Subscribe(context.Background(), api.ID)
	if err != nil {
		t.Fatalf("subscribe during a load: %v", err)
	}
	m := <-sub.Messages()
	if m.Netmap == nil || m.Netmap.Version != v {
		t.Fatalf("first message %+v, want the netmap of version %d", m, v)
	}
	found := false
	for _, p := range m.Netmap.Peers {
		found = found || p.ID == web2.ID
	}
	if !found {
		t.Fatalf("api's first map misses the new web node: %+v", m.Netmap.Peers)
	}
}
