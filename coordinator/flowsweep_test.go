package coordinator

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

type fakePruner struct {
	before []time.Time
	max    []int
}

func (f *fakePruner) PruneFlows(_ context.Context, before time.Time, max int) (int64, error) {
	f.before, f.max = append(f.before, before), append(f.max, max)
	return 1, nil
}

func TestFlowSweeperPrunesByRetentionAndCount(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	p := &fakePruner{}
	s := &flowSweeper{store: p, retention: 24 * time.Hour, max: 1000, now: func() time.Time { return now }, log: slog.New(slog.DiscardHandler)}
	s.sweep(context.Background())
	if len(p.before) != 1 || !p.before[0].Equal(now.Add(-24*time.Hour)) || p.max[0] != 1000 {
		t.Errorf("pruned before %v max %v; want %v and 1000", p.before, p.max, now.Add(-24*time.Hour))
	}
}

func TestFlowSweepInterval(t *testing.T) {
	for _, tc := range []struct{ retention, want time.Duration }{
		{time.Minute, 6 * time.Second},
		{5 * time.Second, time.Second},
		{24 * time.Hour, time.Minute},
	} {
		if got := flowSweepInterval(tc.retention); got != tc.want {
			t.Errorf("retention %v: interval %v, want %v", tc.retention, got, tc.want)
		}
	}
}
