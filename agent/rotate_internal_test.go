package agent

import (
	"testing"
	"time"
)

func TestRotateAtSpreadsAroundThePeriod(t *testing.T) {
	last := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		rnd  func(int64) int64
		want time.Duration
	}{
		{"earliest", func(int64) int64 { return 0 }, 24 * time.Hour * 9 / 10},
		{"latest", func(n int64) int64 { return n - 1 }, 24 * time.Hour * 11 / 10},
		{"middle", func(n int64) int64 { return n / 2 }, 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rotateAt(last, 24*time.Hour, tt.rnd).Sub(last)
			if d := got - tt.want; d < -time.Millisecond || d > time.Millisecond {
				t.Fatalf("rotateAt = +%v, want +%v", got, tt.want)
			}
		})
	}
}
