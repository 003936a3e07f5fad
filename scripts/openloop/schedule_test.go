package openloop

import (
	"testing"
	"time"
)

// TestScheduleDue: how many payments are due at each moment: the first at
// the start, the i-th at i/rate, never more than the run holds.
func TestScheduleDue(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		rate, n int
		after   time.Duration
		want    int
	}{
		{1000, 10, -time.Nanosecond, 0},
		{1000, 10, 0, 1},
		{1000, 10, 999 * time.Microsecond, 1},
		{1000, 10, time.Millisecond, 2},
		{1000, 10, 8*time.Millisecond + 999*time.Microsecond, 9},
		{1000, 10, 9 * time.Millisecond, 10},
		{1000, 10, time.Hour, 10},
		{3, 6, 333 * time.Millisecond, 1},
		{3, 6, 333333333 * time.Nanosecond, 2}, // 1/3 s, to the nanosecond below
		{3, 6, time.Second, 4},
		{3, 6, 1666666666 * time.Nanosecond, 6},
		{12_000, 180_000, 15 * time.Second, 180_000},
		{12_000, 180_000, 10 * time.Second, 120_001},
		{12_000, 180_000, 10*time.Second - time.Nanosecond, 120_000},
		{1_000_000, 10_000_000, 9*time.Second + 999_999_999, 10_000_000},
		{1_000_000, 10_000_000, 5 * time.Second, 5_000_001},
	} {
		s := schedule{start: start, rate: tc.rate, n: tc.n}
		if got := s.due(start.Add(tc.after)); got != tc.want {
			t.Errorf("%d/s, %d payments: %d due after %s, want %d", tc.rate, tc.n, got, tc.after, tc.want)
		}
	}
}

// TestScheduleAt: payment i is due at its time and not a nanosecond before,
// for rates that do and do not divide a second.
func TestScheduleAt(t *testing.T) {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for _, rate := range []int{1, 3, 7, 250, 1000, 12_000, 33_333} {
		s := schedule{start: start, rate: rate, n: 5 * rate}
		for i := range s.n {
			at := s.at(i)
			if s.due(at) < i+1 || s.due(at.Add(-time.Nanosecond)) > i {
				t.Fatalf("%d/s: payment %d at +%s: %d due then, %d a nanosecond before", rate, i, at.Sub(start), s.due(at), s.due(at.Add(-time.Nanosecond)))
			}
		}
		if got := s.at(rate).Sub(start); got != time.Second {
			t.Fatalf("%d/s: payment %d at +%s, want 1s", rate, rate, got)
		}
	}
}
