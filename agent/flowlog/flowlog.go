// Package flowlog aggregates a node's flow counts into the summaries the
// agent reports to the coordinator every interval.
//
// The data plane (package overlay) counts packets per batch, without
// locks, and hands each batch's counts to an Aggregator (an
// overlay.FlowSink) once: one lock per batch, never one per packet. The
// Aggregator sums them per direction, source, destination, protocol,
// destination port, verdict and reason until Drain takes the interval's
// summaries and starts a new interval.
//
// Memory is bounded: an interval holds at most MaxKeys distinct keys.
// Packets of further keys are still counted, in one "overflow" summary per
// direction and verdict (without addresses), so totals stay exact while
// detail is lost. Nothing is kept across intervals but the tables' storage,
// which is reused, so a steady state allocates nothing per batch.
//
// Only headers are read: no payload byte is ever recorded.
package flowlog

import (
	"net/netip"
	"sync"
	"time"

	"github.com/latchnet/latch/acl/filter"
	"github.com/latchnet/latch/overlay"
	"github.com/latchnet/latch/wire"
)

// ReasonOverflow is the reason of the summaries that count the packets of
// keys beyond MaxKeys in one interval.
const ReasonOverflow = "overflow"

// DefaultMaxKeys bounds the distinct keys of one interval so that an
// interval's summaries, with the at most four overflow summaries, fit in
// one wire.FlowReport.
const DefaultMaxKeys = wire.MaxFlowsPerReport - 4

// Options configure New.
type Options struct {
	// MaxKeys caps the distinct keys per interval; zero means
	// DefaultMaxKeys.
	MaxKeys int
	// Now is the clock for First and Last; nil means time.Now. It is read
	// once per batch.
	Now func() time.Time
}

// key is one summary's identity.
type key struct {
	dir overlay.FlowDirection
	overlay.FlowKey
}

// entry is one key's counts; first and last are Unix nanoseconds.
type entry struct {
	key
	packets, bytes uint64
	first, last    int64
}

func (e *entry) add(packets, bytes uint64, now int64) {
	if e.packets == 0 {
		e.first = now
	}
	e.packets += packets
	e.bytes += bytes
	e.last = now
}

// table is one interval's counts.
type table struct {
	idx  map[key]int32 // index into ents
	ents []entry
	// overflow counts keys beyond the cap, by direction and verdict.
	overflow [2][2]entry
}

func newTable(max int) *table {
	return &table{idx: make(map[key]int32, max), ents: make([]entry, 0, max)}
}

func (t *table) reset() {
	clear(t.idx)
	clear(t.ents) // drop the addresses' zone handles
	t.ents = t.ents[:0]
	t.overflow = [2][2]entry{}
}

// Aggregator sums flow counts over one interval. It is safe for
// concurrent use.
type Aggregator struct {
	max int
	now func() time.Time

	mu  sync.Mutex // guards cur
	cur *table

	// drainMu serialises Drain, which owns spare.
	drainMu sync.Mutex
	spare   *table
}

// New returns an empty Aggregator.
func New(opts Options) *Aggregator {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Aggregator{max: opts.MaxKeys, now: opts.Now, cur: newTable(opts.MaxKeys), spare: newTable(opts.MaxKeys)}
}

// AddFlows implements overlay.FlowSink: it merges one batch's counts under
// one lock.
func (a *Aggregator) AddFlows(dir overlay.FlowDirection, counts []overlay.FlowCount) {
	if len(counts) == 0 {
		return
	}
	now := a.now().UnixNano()
	a.mu.Lock()
	t := a.cur
	for i := range counts {
		c := &counts[i]
		k := key{dir: dir, FlowKey: c.Key}
		if x, ok := t.idx[k]; ok {
			t.ents[x].add(c.Packets, c.Bytes, now)
			continue
		}
		if len(t.ents) < a.max {
			t.idx[k] = int32(len(t.ents))
			t.ents = append(t.ents, entry{key: k})
			t.ents[len(t.ents)-1].add(c.Packets, c.Bytes, now)
			continue
		}
		t.overflow[dir&1][c.Key.Verdict&1].add(c.Packets, c.Bytes, now)
	}
	a.mu.Unlock()
}

// Drain returns the interval's summaries, keys in the order first seen and
// then the overflow summaries, and starts a new interval. Summaries have
// no node identities; the caller knows who is behind which address.
func (a *Aggregator) Drain() []wire.FlowSummary {
	a.drainMu.Lock()
	defer a.drainMu.Unlock()
	a.mu.Lock()
	t := a.cur
	a.cur, a.spare = a.spare, nil
	a.mu.Unlock()

	out := make([]wire.FlowSummary, 0, len(t.ents)+4)
	for i := range t.ents {
		e := &t.ents[i]
		out = append(out, summary(e, e.dir, e.Src, e.Dst, uint8(e.Proto), e.DstPort, e.Verdict, e.Reason.String()))
	}
	for dir := range t.overflow {
		for v := range t.overflow[dir] {
			if e := &t.overflow[dir][v]; e.packets > 0 {
				out = append(out, summary(e, overlay.FlowDirection(dir), netip.Addr{}, netip.Addr{}, 0, 0, filter.Verdict(v), ReasonOverflow))
			}
		}
	}
	t.reset()
	a.spare = t
	return out
}

func summary(e *entry, dir overlay.FlowDirection, src, dst netip.Addr, proto uint8, port uint16, v filter.Verdict, reason string) wire.FlowSummary {
	verdict := wire.FlowDrop
	if v == filter.Accept {
		verdict = wire.FlowAccept
	}
	return wire.FlowSummary{
		Direction: dir.String(),
		Src:       src,
		Dst:       dst,
		Proto:     wire.Proto(proto),
		DstPort:   port,
		Verdict:   verdict,
		Reason:    reason,
		Packets:   e.packets,
		Bytes:     e.bytes,
		First:     time.Unix(0, e.first).UTC(),
		Last:      time.Unix(0, e.last).UTC(),
	}
}
