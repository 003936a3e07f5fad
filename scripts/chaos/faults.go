package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// Faults are the kinds of fault a run makes, from FAULTS=kill,pause,partition.
type Faults struct {
	// Kill: SIGKILL of order and email instances (and payment instances
	// over HTTP), and of brokers of make kafka-up.
	Kill bool
	// Pause: SIGSTOP and SIGCONT of order and email instances, some for
	// longer than the session and transaction timeouts; of the registry
	// and the mail server, 20 s each; and of brokers of make kafka-up.
	Pause bool
	// Partition: a broker of make kafka-up cut off from the others and
	// from the shop while its process runs (its network link down).
	Partition bool
}

// parseFaults reads a comma-separated list of kill, pause and partition.
func parseFaults(s string) (Faults, error) {
	var f Faults
	for _, name := range strings.Split(s, ",") {
		switch strings.TrimSpace(name) {
		case "kill":
			f.Kill = true
		case "pause":
			f.Pause = true
		case "partition":
			f.Partition = true
		case "":
		default:
			return f, fmt.Errorf("%q: want kill, pause or partition, comma-separated", name)
		}
	}
	if f == (Faults{}) {
		return f, fmt.Errorf("%q: no fault named", s)
	}
	return f, nil
}

func (f Faults) String() string {
	var names []string
	for _, k := range []struct {
		on   bool
		name string
	}{{f.Kill, "kill"}, {f.Pause, "pause"}, {f.Partition, "partition"}} {
		if k.on {
			names = append(names, k.name)
		}
	}
	return strings.Join(names, ",")
}

// fault is one fault of a run, as the run lists it.
type fault struct {
	at     time.Duration // since the run began
	kind   string        // kill, pause or partition
	target string        // "order chaos-2", "broker 2 (127.0.0.1:9093)", "registry"...
	length time.Duration // how long it lasted; 0 for a kill
	note   string
}

// faultLog lists the faults of a run as they happen, and once more at the
// end with their lengths; it counts them for the last line.
type faultLog struct {
	start time.Time
	out   io.Writer

	mu     sync.Mutex
	faults []*fault
}

// newFaultLog starts a log whose times count from start.
func newFaultLog(out io.Writer, start time.Time) *faultLog { return &faultLog{start: start, out: out} }

// begin notes a fault that starts now, to last planned (0 for a kill), and
// says so; end, once it is over, gives its length.
func (l *faultLog) begin(kind, target string, planned time.Duration, note string) *fault {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := &fault{at: time.Since(l.start), kind: kind, target: target, note: note}
	l.faults = append(l.faults, f)
	length := ""
	if planned > 0 {
		length = fmt.Sprintf(" for %.1fs", planned.Seconds())
	}
	fmt.Fprintf(l.out, "  %5.1fs  %s %s%s%s\n", f.at.Seconds(), kind, target, length, suffix(note))
	return f
}

func (l *faultLog) end(f *fault, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f.length = time.Since(l.start) - f.at
	fmt.Fprintf(l.out, "  %5.1fs  %s %s after %.1fs\n", time.Since(l.start).Seconds(), what, f.target, f.length.Seconds())
}

// count is how many faults of kind the run made, and how many of them
// lasted longer than longer.
func (l *faultLog) count(kind string, longer time.Duration) (n, long int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.faults {
		if f.kind == kind {
			n++
			if longer > 0 && f.length > longer {
				long++
			}
		}
	}
	return n, long
}

// report lists every fault with its time, target and length.
func (l *faultLog) report(w io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(w, "  faults (%d), time since the start, what, target, length:\n", len(l.faults))
	for _, f := range slices.SortedFunc(slices.Values(l.faults), func(a, b *fault) int { return int(a.at - b.at) }) {
		length := "-"
		if f.length > 0 {
			length = fmt.Sprintf("%.1fs", f.length.Seconds())
		}
		fmt.Fprintf(w, "    %6.1fs  %-9s  %-38s  %6s%s\n", f.at.Seconds(), f.kind, f.target, length, suffix(f.note))
	}
}

func suffix(note string) string {
	if note == "" {
		return ""
	}
	return " (" + note + ")"
}
