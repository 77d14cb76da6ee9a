package main

import (
	"fmt"
	"time"
)

// DefaultFlowInterval is how often latchd reports flow summaries unless
// --flow-interval says otherwise.
const DefaultFlowInterval = 5 * time.Second

// Bounds of a non-zero --flow-interval: faster floods the coordinator
// (which rate-limits reports), slower makes `latch flows` stale.
const (
	minFlowInterval = time.Second
	maxFlowInterval = 10 * time.Minute
)

// flowInterval returns agent.Config.FlowInterval: 0 when flow logs are off.
func (c Config) flowInterval() (time.Duration, error) {
	if c.FlowInterval == "" {
		return DefaultFlowInterval, nil
	}
	d, err := time.ParseDuration(c.FlowInterval)
	switch {
	case err == nil && d == 0:
		return 0, nil
	case err != nil || d < minFlowInterval || d > maxFlowInterval:
		return 0, fmt.Errorf("invalid --flow-interval %q: want a duration from %v to %v, like \"5s\", or 0 to turn flow logs off", c.FlowInterval, minFlowInterval, maxFlowInterval)
	}
	return d, nil
}
