package netmap

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// TestVersionMeansEveryStreamWasSentTheRemoval checks the promise the
// store's address hold relies on: once Version reports v, every live
// subscription that held a node deleted at version <= v already has the
// delta removing it in its queue.
func TestVersionMeansEveryStreamWasSentTheRemoval(t *testing.T) {
	src := reference(t)
	h := newTestHub(t, src, 64)
	var cs []*client
	for _, n := range []Node{web, api, db, ci} {
		cs = append(cs, subscribe(t, h, n.ID))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	checked := 0
	for round := range 30 {
		// A runner joins that everyone in its policy may see, then goes.
		tags := [][]wire.Tag{{"tag:web"}, {"tag:api"}, {"tag:db"}, {"tag:ci"}}[rng.IntN(4)]
		r := testNode(100+round, tags...)
		v := src.change(add(r))
		notify(t, h, v)
		var holders []*client
		for _, c := range cs {
			for {
				select {
				case m := <-c.sub.Messages():
					nm, err := c.nm.Apply(m.Delta)
					if err != nil {
						t.Fatal(err)
					}
					c.nm = nm
					continue
				default:
				}
				break
			}
			if _, ok := peer(c.nm, r.ID); ok {
				holders = append(holders, c)
			}
		}
		checked += len(holders)
		v = src.change(del(r.ID))
		h.Notify()
		deadline := time.Now().Add(5 * time.Second)
		for h.Version() < v {
			if time.Now().After(deadline) {
				t.Fatalf("hub did not reach version %d", v)
			}
			time.Sleep(time.Millisecond)
		}
		// Version reached: the removal is already queued for every holder,
		// no waiting allowed.
		for _, c := range holders {
			select {
			case m := <-c.sub.Messages():
				if m.Delta == nil || !slices.Contains(m.Delta.Remove, r.ID) {
					t.Fatalf("round %d: %s's queued message does not remove %s: %+v", round, c.sub.id, r.ID, m.Delta)
				}
				nm, err := c.nm.Apply(m.Delta)
				if err != nil {
					t.Fatal(err)
				}
				c.nm = nm
			default:
				t.Fatalf("round %d: Version() = %d but %s was not sent the removal of %s", round, h.Version(), c.sub.id, r.ID)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no runner was ever a peer: the test checked nothing")
	}
}
