package main

import (
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {1, time.Millisecond}} {
		if got := Percentile(ds, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := Percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("p99 of one sample = %v", got)
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v", got)
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("Percentile sorted its input in place")
	}
}

// The last line is what checks read: "bench: " and name=value pairs, with
// the figures CONTRACTS.md names, each once.
func TestResultLine(t *testing.T) {
	var r Results
	for _, n := range []string{"ingest_rps", "eos_rps", "alos_rps", "eos_over_alos", "e2e_p50_ms", "e2e_p99_ms"} {
		r.Add(n, "1")
	}
	r.Add("eos_rps", "2")
	line := r.Line()
	if !strings.HasPrefix(line, "bench: ") {
		t.Fatalf("line %q does not start with \"bench: \"", line)
	}
	fields := strings.Fields(strings.TrimPrefix(line, "bench: "))
	if len(fields) != 6 || fields[1] != "eos_rps=2" {
		t.Fatalf("fields %q: want six pairs, eos_rps=2 in second place", fields)
	}
	for _, f := range fields {
		if name, value, ok := strings.Cut(f, "="); !ok || name == "" || value == "" {
			t.Errorf("%q is not name=value", f)
		}
	}
}

func TestDelayName(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0ms", 10 * time.Millisecond: "10ms", 100 * time.Millisecond: "100ms", time.Second: "1s"} {
		if got := delayName(d); got != want {
			t.Errorf("delayName(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{{[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 100}, 3.5}, {[]float64{7}, 7}} {
		if got := median(tc.xs); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.xs, got, tc.want)
		}
	}
}
