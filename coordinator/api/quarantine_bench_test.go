package api

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// BenchmarkQuarantineReachesEveryStream measures the coordinator's share
// of the quarantine latency budget (1 s): from the admin's POST until the
// last of the streaming peers received the delta that removes the
// quarantined node, and the same for unquarantine bringing it back. Each
// op is one quarantine and one unquarantine; it reports the p50, p99 and
// max of the per-change "last peer told" latency.
//
//	go test -run '^$' -bench BenchmarkQuarantineReachesEveryStream -benchtime 20x ./coordinator/api
func BenchmarkQuarantineReachesEveryStream(b *testing.B) {
	for _, n := range []int{100, 500} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) { benchQuarantine(b, n) })
	}
}

func benchQuarantine(b *testing.B, streams int) {
	net := newBenchNet(b, streams)
	target := net.nodes[0].resp.Node.ID
	type event struct {
		gone bool
		at   time.Time
	}
	events := make(chan event, 4*streams)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	wait := net.stream(ctx, net.nodes[1:], func(_ int, m *wire.StreamMessage) {
		if m.Delta == nil {
			return
		}
		switch {
		case slices.Contains(m.Delta.Remove, target):
			events <- event{gone: true, at: time.Now()}
		case slices.ContainsFunc(m.Delta.Upsert, func(p wire.Peer) bool { return p.ID == target }):
			events <- event{gone: false, at: time.Now()}
		}
	})
	path := wire.PathNodes + "/" + string(target)
	var lat []time.Duration
	change := func(gone bool) {
		start := time.Now()
		if gone {
			net.post(path+wire.PathNodeQuarantine, wire.QuarantineRequest{Reason: "bench"})
		} else {
			net.post(path+wire.PathNodeUnquarantine, struct{}{})
		}
		var last time.Time
		for i := range streams - 1 {
			select {
			case ev := <-events:
				if ev.gone != gone {
					b.Fatalf("unexpected event %+v", ev)
				}
				last = ev.at
			case <-time.After(30 * time.Second):
				b.Fatalf("only %d of %d streams were told within 30s (gone=%v)", i, streams-1, gone)
			}
		}
		lat = append(lat, last.Sub(start))
	}
	b.ResetTimer()
	for range b.N {
		change(true)
		change(false)
	}
	b.StopTimer()
	net.hub.Close()
	stop()
	var once sync.Once
	once.Do(wait)
	slices.Sort(lat)
	b.ReportMetric(percentile(lat, 0.50), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
