package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// contractFigures are the headline figures the last line always holds,
// under these names: BENCHMARKS.md quotes them and checks read them.
var contractFigures = []string{
	ingestName(64, "rps"), ingestName(256, "rps"), "raw_produce_rps",
	"eos_rps", "alos_rps", "eos_over_alos",
	e2eName(1000, "p50_ms"), e2eName(1000, "p99_ms"),
}

// Results are the figures of a run, in the order they were measured.
type Results struct {
	mu    sync.Mutex
	names []string
	vals  map[string]string
}

// Add sets a figure; a name added twice keeps its first place.
func (r *Results) Add(name, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.vals == nil {
		r.vals = map[string]string{}
	}
	if _, ok := r.vals[name]; !ok {
		r.names = append(r.names, name)
	}
	r.vals[name] = value
}

// Get is a figure, "" if it was not measured.
func (r *Results) Get(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.vals[name]
}

// Line is the last line of a run: "bench: " then name=value pairs.
func (r *Results) Line() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	b.WriteString("bench:")
	for _, n := range r.names {
		fmt.Fprintf(&b, " %s=%s", n, r.vals[n])
	}
	return b.String()
}

// ms formats a duration as milliseconds with one decimal.
func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// rate formats a count per second, rounded.
func rate(n int, d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return fmt.Sprintf("%.0f", float64(n)/d.Seconds())
}

// progress prints indented lines with the time since the run began.
type progress struct {
	mu    sync.Mutex
	out   io.Writer
	start time.Time
}

func newProgress(out io.Writer) *progress { return &progress{out: out, start: time.Now()} }

func (p *progress) Printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "  %6.1fs  %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

func (p *progress) Elapsed() time.Duration { return time.Since(p.start) }
