package audit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func chain(n int) []Record {
	var (
		recs []Record
		seq  int64
		prev string
	)
	for i := range n {
		r := Record{Time: t0.Add(time.Duration(i) * time.Second), Actor: "system", Action: AccessExpire, Target: "r", Summary: "{}"}
		Seal(&r, seq, prev)
		seq, prev = r.Seq, r.Hash
		recs = append(recs, r)
	}
	return recs
}

func TestHashEncodingIsUnambiguous(t *testing.T) {
	base := Record{Seq: 1, Time: t0, Actor: "ab", Action: "c", Target: "t", Summary: "{}"}
	variants := []Record{
		{Seq: 1, Time: t0, Actor: "a", Action: "bc", Target: "t", Summary: "{}"}, // boundary moved
		{Seq: 1, Time: t0, Actor: "ab", Action: "c", Target: "", Summary: "t{}"}, // boundary moved
		{Seq: 2, Time: t0, Actor: "ab", Action: "c", Target: "t", Summary: "{}"}, // seq
		{Seq: 1, Time: t0.Add(time.Microsecond), Actor: "ab", Action: "c", Target: "t", Summary: "{}"},
		{Seq: 1, Time: t0, Actor: "ab", Action: "c", Target: "t", Summary: "{}", PrevHash: "00"},
	}
	h := ComputeHash(base)
	if len(h) != 64 {
		t.Fatalf("hash %q: want 64 hex digits", h)
	}
	for i, v := range variants {
		if ComputeHash(v) == h {
			t.Errorf("variant %d hashes like the base record", i)
		}
	}
	// Sub-microsecond differences are not stored, so they must not count.
	same := base
	same.Time = t0.Add(300 * time.Nanosecond)
	if ComputeHash(same) != h {
		t.Error("hash depends on time below the stored microsecond")
	}
}

func TestVerifierFindsTheFirstBrokenRecord(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func([]Record) []Record
		wantSeq int64 // 0: intact
		reason  string
	}{
		{"intact", func(r []Record) []Record { return r }, 0, ""},
		{"edited", func(r []Record) []Record { r[3].Target = "x"; return r }, 4, "edited"},
		{"removed", func(r []Record) []Record { return append(r[:3:3], r[4:]...) }, 5, "removed"},
		{"reordered", func(r []Record) []Record { r[3], r[4] = r[4], r[3]; return r }, 5, "reordered"},
		{"renumbered after removal", func(r []Record) []Record {
			r = append(r[:3:3], r[4:]...)
			for i := 3; i < len(r); i++ {
				r[i].Seq--
			}
			return r
		}, 4, "previous hash"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v Verifier
			var err error
			for _, r := range tc.mutate(chain(8)) {
				if err = v.Next(r); err != nil {
					break
				}
			}
			var b *BrokenError
			switch {
			case tc.wantSeq == 0 && (err != nil || v.Count() != 8):
				t.Fatalf("intact chain: %v, count %d", err, v.Count())
			case tc.wantSeq != 0 && (!errors.As(err, &b) || b.Seq != tc.wantSeq || !strings.Contains(b.Reason, tc.reason)):
				t.Fatalf("got %v, want broken at %d (%s)", err, tc.wantSeq, tc.reason)
			}
		})
	}
}

func TestEntryInContext(t *testing.T) {
	ctx := context.Background()
	if FromContext(ctx) != nil {
		t.Fatal("entry in a bare context")
	}
	Annotate(ctx, "k", 1) // no entry: no effect, no panic
	mine := map[string]any{"b": 2, "a": "x"}
	ctx = With(ctx, Entry{Actor: "system", Summary: mine})
	Annotate(ctx, "version", 3)
	if _, ok := mine["version"]; ok {
		t.Error("Annotate changed the caller's map")
	}
	s, err := EncodeSummary(FromContext(ctx).Summary)
	if err != nil || s != `{"a":"x","b":2,"version":3}` {
		t.Errorf("summary %s, %v", s, err)
	}
	if FromContext(ctx).Dropped() {
		t.Error("dropped before Drop")
	}
	Drop(ctx)
	if !FromContext(ctx).Dropped() {
		t.Error("not dropped after Drop")
	}
	if s, _ := EncodeSummary(nil); s != "{}" {
		t.Errorf("empty summary %q", s)
	}
}

func BenchmarkComputeHash(b *testing.B) {
	r := Record{Seq: 1, Time: t0, Actor: "token:0123456789ab user:alice@example.com", Action: PolicySave, Target: "policy",
		Summary: `{"gained":3,"lost":0,"version":7}`, PrevHash: strings.Repeat("a", 64)}
	b.ReportAllocs()
	for b.Loop() {
		ComputeHash(r)
	}
}
