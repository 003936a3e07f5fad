package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// The last line is what checks read: "bench: " and name=value pairs, with
// the headline figures, each once.
func TestResultLine(t *testing.T) {
	var r Results
	for _, n := range contractFigures {
		r.Add(n, "1")
	}
	r.Add("eos_rps", "2")
	line := r.Line()
	if !strings.HasPrefix(line, "bench: ") {
		t.Fatalf("line %q does not start with \"bench: \"", line)
	}
	fields := strings.Fields(strings.TrimPrefix(line, "bench: "))
	if len(fields) != len(contractFigures) || fields[3] != "eos_rps=2" {
		t.Fatalf("fields %q: want %d pairs, eos_rps=2 in fourth place", fields, len(contractFigures))
	}
	for _, f := range fields {
		if name, value, ok := strings.Cut(f, "="); !ok || name == "" || value == "" {
			t.Errorf("%q is not name=value", f)
		}
	}
}

// The headline figures keep their names: ingest_rps at 64 clients,
// ingest_256_rps, raw_produce_rps, eos_rps, alos_rps, eos_over_alos, and
// e2e_p50_ms and e2e_p99_ms at 1,000 payments/s are the names the sections
// give their figures.
func TestFigureNamesOfTheContract(t *testing.T) {
	want := []string{"ingest_rps", "ingest_256_rps", "raw_produce_rps", "eos_rps", "alos_rps", "eos_over_alos", "e2e_p50_ms", "e2e_p99_ms"}
	if strings.Join(contractFigures, " ") != strings.Join(want, " ") {
		t.Fatalf("contract figures %q, want %q", contractFigures, want)
	}
	for _, tc := range []struct{ got, want string }{
		{ingestName(64, "rps"), "ingest_rps"},
		{ingestName(64, "p99_ms"), "ingest_p99_ms"},
		{ingestName(256, "rps"), "ingest_256_rps"},
		{ingestName(256, "p50_ms"), "ingest_256_p50_ms"},
		{e2eName(1000, "p50_ms"), "e2e_p50_ms"},
		{e2eName(1000, "p99_ms"), "e2e_p99_ms"},
		{e2eName(100, "p99_ms"), "e2e_100_p99_ms"},
		{e2eName(5000, "p50_ms"), "e2e_5000_p50_ms"},
	} {
		if tc.got != tc.want {
			t.Errorf("figure %q, want %q", tc.got, tc.want)
		}
	}
	// The sections run by default measure every one of them.
	for _, s := range []string{"e2e", "ingest", "raw", "eos"} {
		if !slices.Contains(defaultSections, s) {
			t.Errorf("section %s, which measures a figure of the contract, is not run by default", s)
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
