package payment

import (
	"context"
	"testing"
	"time"
)

// moved feeds the bound one window of n payments acknowledged after
// latency each (or failed), with peak of them in flight at once, and
// returns the bound after it.
func moved(a *Admission, n int, latency time.Duration, failures, peak int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	start := time.Unix(1_000_000, 0)
	a.win = window{start: start, acked: n, latency: time.Duration(n) * latency, failed: failures, peakUsed: peak}
	a.learn(start.Add(windowLength))
	return int(a.limit)
}

func TestBoundFollowsTheLatencyAgainstItsTarget(t *testing.T) {
	a := NewAdmission(AdmissionOptions{Target: 50 * time.Millisecond, Initial: 20, Min: 10, Max: 200})
	steps := []struct {
		what           string
		latency        time.Duration
		failures, peak int
		want           int
	}{
		{"in use and fast: doubles (slow start)", 5 * time.Millisecond, 0, 20, 40},
		{"again", 5 * time.Millisecond, 0, 40, 80},
		{"not in use: stays", 5 * time.Millisecond, 0, 30, 80},
		{"twice the target: halves", 100 * time.Millisecond, 0, 80, 40},
		{"in use and fast after a miss: grows by its square root", 5 * time.Millisecond, 0, 40, 46},
		{"a quarter over the target: shrinks by a fifth", 62500 * time.Microsecond, 0, 46, 37},
		{"Kafka failed a payment: halves", 5 * time.Millisecond, 1, 36, 18},
		{"ten times the target: at most halves, not below the minimum", 500 * time.Millisecond, 0, 18, 10},
	}
	for _, s := range steps {
		if got := moved(a, 20, s.latency, s.failures, s.peak); got != s.want {
			t.Fatalf("%s: bound %d, want %d", s.what, got, s.want)
		}
	}
	for range 100 {
		moved(a, 20, time.Millisecond, 0, a.Limit())
	}
	if got := a.Limit(); got != 200 {
		t.Fatalf("fast and in use for long: bound %d, want the maximum 200", got)
	}
}

func TestAWindowNeedsEnoughPayments(t *testing.T) {
	a := NewAdmission(AdmissionOptions{Initial: 20})
	if got := moved(a, windowSamples-1, time.Second, 0, 20); got != 20 {
		t.Fatalf("a window of %d payments moved the bound to %d", windowSamples-1, got)
	}
}

func TestPastTheBoundAPaymentWaitsThenIsRefused(t *testing.T) {
	a := NewAdmission(AdmissionOptions{Initial: 1, Min: 1, Max: 1, Wait: time.Hour, Queue: 1})
	ctx := context.Background()
	if !a.acquire(ctx) {
		t.Fatal("the first payment was not admitted")
	}
	// The second waits; the third finds the queue full and is refused
	// without waiting.
	second := make(chan bool)
	go func() { second <- a.acquire(ctx) }()
	for {
		a.mu.Lock()
		n := len(a.queue)
		a.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if a.acquire(ctx) {
		t.Fatal("a payment past a full queue was admitted")
	}
	a.release(time.Now(), ignored)
	if !<-second {
		t.Fatal("the waiting payment did not get the place freed")
	}
	if got := a.InFlight(); got != 1 {
		t.Fatalf("%d in flight, want 1", got)
	}

	// A payment whose wait runs out, or whose client leaves, is refused
	// and leaves the queue.
	b := NewAdmission(AdmissionOptions{Initial: 1, Min: 1, Max: 1, Wait: time.Millisecond})
	b.acquire(ctx)
	if b.acquire(ctx) {
		t.Fatal("admitted past the bound after its wait")
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if b.acquire(gone) {
		t.Fatal("admitted past the bound with its client gone")
	}
	if len(b.queue) != 0 {
		t.Fatalf("%d left in the queue", len(b.queue))
	}
}

// TestNoQueueRefusesAtOnce: with no queue, a payment past the bound is
// refused without waiting (a wait of an hour would hang the test).
func TestNoQueueRefusesAtOnce(t *testing.T) {
	a := NewAdmission(AdmissionOptions{Initial: 1, Min: 1, Max: 1, Wait: time.Hour, Queue: -1})
	a.acquire(context.Background())
	if a.acquire(context.Background()) {
		t.Fatal("admitted past the bound")
	}
}
