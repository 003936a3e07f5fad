package main

import (
	"io"
	"slices"
	"testing"

	"github.com/blackfriday-kafka/shop/scripts/openloop"
)

// edge is a payment edge that serves every payment under 100 ms up to
// capacity payments/s, and past it answers late or not at all, as fail says.
func edge(capacity int, fail func(*openloop.Report)) func(rate int) *openloop.Report {
	return func(rate int) *openloop.Report {
		r := &openloop.Report{Offered: 5 * rate, OK: 5 * rate, OKP99MS: 12}
		if rate > capacity {
			fail(r)
		}
		return r
	}
}

// TestFindCapacity: the search steps the rate up by half until a step
// fails, then bisects three times between the last rate that passed and
// the first that failed, whichever way a step fails.
func TestFindCapacity(t *testing.T) {
	late := func(r *openloop.Report) { r.OKP99MS = 100 }
	timedOut := func(r *openloop.Report) { r.OK--; r.Timeouts++ }
	shed := func(r *openloop.Report) { r.OK -= 10; r.Shed += 10 }
	for _, tc := range []struct {
		capacity int
		fail     func(*openloop.Report)
		want     int
		steps    []int
	}{
		{1000, late, 1000, []int{250, 375, 562, 843, 1264, 1053, 948, 1000}},
		{1000, timedOut, 1000, []int{250, 375, 562, 843, 1264, 1053, 948, 1000}},
		{900, shed, 895, []int{250, 375, 562, 843, 1264, 1053, 948, 895}},
		{100, late, 93, []int{250, 125, 62, 93}},
	} {
		var steps []int
		got, err := findCapacity(func(rate int) (*openloop.Report, error) {
			steps = append(steps, rate)
			return edge(tc.capacity, tc.fail)(rate), nil
		})
		if err != nil || got != tc.want || !slices.Equal(steps, tc.steps) {
			t.Errorf("capacity %d: found %d (%v) in steps %v, want %d in %v", tc.capacity, got, err, steps, tc.want, tc.steps)
		}
	}
	if got, err := findCapacity(func(rate int) (*openloop.Report, error) { return edge(0, late)(rate), nil }); err == nil {
		t.Errorf("an edge that fails at every rate: capacity %d, no error", got)
	}
	if got, err := findCapacity(func(rate int) (*openloop.Report, error) { return edge(1<<30, late)(rate), nil }); err == nil {
		t.Errorf("an edge the generator cannot overload: capacity %d, no error", got)
	}
}

func TestCPUList(t *testing.T) {
	for list, want := range map[string][]int{"0,1": {0, 1}, "0-3": {0, 1, 2, 3}, "2,4-5": {2, 4, 5}, "1": {1}, "": nil, "x": nil, "3-1": nil} {
		if got := cpuList(list); !slices.Equal(got, want) {
			t.Errorf("cpuList(%q) = %v, want %v", list, got, want)
		}
	}
}

// TestOverloadFigures: the overload section's figures have the names and
// the precision BENCHMARKS.md quotes, the goodput as the ok rate over the
// capacity.
func TestOverloadFigures(t *testing.T) {
	var res Results
	rep := &openloop.Report{OfferedRPS: 9000.4, OKRPS: 2634.6, ShedRPS: 6100, ShedP99MS: 3.21, OKP99MS: 48.04, Timeouts: 0,
		Check: &openloop.Checked{Lost: 0, ChargedUnanswered: 2}}
	addOverload(&res, newProgress(io.Discard), 3000, rep, 200*1024)
	want := "bench: overload_offered_rps=9000 overload_ok_rps=2635 overload_goodput_ratio=0.878 overload_shed_rps=6100 overload_shed_p99_ms=3.2" +
		" overload_ok_p99_ms=48.0 overload_timeouts=0 overload_rss_mb=200 overload_lost=0 overload_charged_unanswered=2"
	if got := res.Line(); got != want {
		t.Fatalf("line\n%s\nwant\n%s", got, want)
	}
}
