package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Flow log retention: agents report flow summaries every few seconds, so
// the flows table grows all the time. The sweeper below deletes records
// older than Config.FlowRetention and, beyond Config.FlowMaxRecords, the
// oldest, every flowSweepInterval. Between two sweeps the table may exceed
// the bounds by what arrived meanwhile.

// Defaults of the flow log bounds.
const (
	DefaultFlowRetention  = 24 * time.Hour
	DefaultFlowMaxRecords = 1_000_000
)

// Bounds of the flow log settings; values outside are typos.
const (
	minFlowRetention  = time.Minute
	maxFlowRetention  = 366 * 24 * time.Hour
	minFlowMaxRecords = 1000
	maxFlowMaxRecords = 1_000_000_000
)

// validateFlows checks the flow log settings.
func (c Config) validateFlows() error {
	switch {
	case c.FlowRetention < minFlowRetention || c.FlowRetention > maxFlowRetention:
		return fmt.Errorf("flow retention %s: want between %s and %s", c.FlowRetention, minFlowRetention, maxFlowRetention)
	case c.FlowMaxRecords < minFlowMaxRecords || c.FlowMaxRecords > maxFlowMaxRecords:
		return fmt.Errorf("flow max records %d: want between %d and %d", c.FlowMaxRecords, minFlowMaxRecords, maxFlowMaxRecords)
	}
	return nil
}

// flowPruner is what the sweeper needs of the store.
type flowPruner interface {
	PruneFlows(ctx context.Context, before time.Time, max int) (int64, error)
}

// flowSweeper enforces the flow log's retention.
type flowSweeper struct {
	store     flowPruner
	retention time.Duration
	max       int
	now       func() time.Time
	log       *slog.Logger
}

// flowSweepInterval is how often the sweeper runs: a tenth of the
// retention, within [1s, 1m].
func flowSweepInterval(retention time.Duration) time.Duration {
	return min(max(retention/10, time.Second), time.Minute)
}

// run sweeps at once and then every flowSweepInterval until ctx ends.
func (f *flowSweeper) run(ctx context.Context) {
	t := time.NewTicker(flowSweepInterval(f.retention))
	defer t.Stop()
	for {
		f.sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep deletes what is beyond the bounds once.
func (f *flowSweeper) sweep(ctx context.Context) {
	n, err := f.store.PruneFlows(ctx, f.now().Add(-f.retention), f.max)
	switch {
	case err != nil && ctx.Err() == nil:
		f.log.Warn("pruning flow logs", "err", err)
	case n > 0:
		f.log.Debug("pruned flow logs", "deleted", n)
	}
}
