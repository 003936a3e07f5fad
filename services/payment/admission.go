package payment

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Admission bounds the payments the service holds at once. Past the bound a
// payment waits a few milliseconds for a place, in a queue of bounded
// length, and is then refused with a 503 and Retry-After, before its body
// is read: a buyer told "not now" in milliseconds can retry, a buyer left
// waiting gives up, and may have been charged all the same.
//
// The bound follows the latency Kafka gives the payments admitted, against
// a target, as TCP's congestion window follows loss: it grows while the
// payments are acknowledged within the target and the bound is in use
// (doubling at first, then by its square root), and shrinks in proportion
// when they are not, or when Kafka failed one. No fixed number is right on
// every machine and cluster.
//
// Why a target and not the minimum latency Netflix's gradient and Vegas
// algorithms aim at: the payment producer batches the payments in flight,
// so more of them in flight raises each one's latency a little and the
// throughput a lot (at 256 clients, 8 to 9 payments per produce request).
// An algorithm that reads any rise in latency as queueing holds the bound
// near the unloaded latency and loses that batching: measured with
// go-concurrency-limits' Gradient2 on the embedded cluster, it let in a
// third of the payments 256 clients got through before.
type Admission struct {
	target     time.Duration
	wait       time.Duration
	min, max   float64
	queueLimit int

	mu        sync.Mutex
	limit     float64
	slowStart bool // doubling until the first time the target is missed
	inFlight  int
	queue     []*waiter // the newest last: a place freed goes to it
	win       window

	admitted prometheus.Counter
	shed     prometheus.Counter
	gauges   []prometheus.Collector
}

// AdmissionOptions tune the bound. The zero value is the default.
type AdmissionOptions struct {
	// Target is the mean latency from admission to Kafka's acknowledgement
	// the bound aims at. Default 50 ms.
	Target time.Duration
	// Initial is the bound at start. Default 256: as many as a closed
	// loop of 256 clients keeps in flight; the first window (100 ms)
	// shrinks it if that is too many.
	Initial int
	// Min is the smallest the bound goes: enough payments in flight to
	// keep the producer's batches full at any latency. Default 16.
	Min int
	// Max is the largest the bound goes, whatever the latency: the
	// producer buffers at most this many records, so a payment admitted
	// never waits for room in it. Default 1,000.
	Max int
	// Wait is how long a payment past the bound waits for a place before
	// it is refused. Default 20 ms.
	Wait time.Duration
	// Queue bounds the payments waiting for a place; past it a payment is
	// refused without waiting. Default 32: enough for a burst; under a
	// lasting overload the queue stays full and the rest are refused at
	// once, without a timer each. Negative: no queue.
	Queue int
}

func (o AdmissionOptions) withDefaults() AdmissionOptions {
	if o.Target <= 0 {
		o.Target = 50 * time.Millisecond
	}
	if o.Max <= 0 {
		o.Max = 1000
	}
	if o.Initial <= 0 {
		o.Initial = min(256, o.Max)
	}
	if o.Min <= 0 {
		o.Min = min(16, o.Initial)
	}
	o.Min = min(o.Min, o.Max)
	o.Initial = min(max(o.Initial, o.Min), o.Max)
	if o.Wait <= 0 {
		o.Wait = 20 * time.Millisecond
	}
	switch {
	case o.Queue == 0:
		o.Queue = 32
	case o.Queue < 0:
		o.Queue = 0
	}
	return o
}

// window is what the bound learns between two of its moves.
type window struct {
	start    time.Time
	acked    int
	latency  time.Duration // sum over the acknowledged
	failed   int
	peakUsed int // most payments in flight at once
}

// windowLength is how often the bound may move, given enough payments.
const (
	windowLength  = 100 * time.Millisecond
	windowSamples = 10
)

// retryAfter is the Retry-After of a refusal, in seconds: long enough for
// the bound to have moved, short enough that a buyer does not leave.
const retryAfter = 1

var retryAfterSeconds = strconv.Itoa(retryAfter) // the header's value, formatted once

// overloadedBody is the answer to a payment refused for overload, written
// as it is: a refusal costs no encoding.
var overloadedBody = []byte(`{"status":"error","error":"the payment service is at capacity: nothing was charged; retry after ` +
	strconv.Itoa(retryAfter) + ` s","reason":"overloaded"}` + "\n")

// NewAdmission makes an admission bound with opts.
func NewAdmission(opts AdmissionOptions) *Admission {
	opts = opts.withDefaults()
	a := &Admission{
		target: opts.Target, wait: opts.Wait, queueLimit: opts.Queue,
		min: float64(opts.Min), max: float64(opts.Max), limit: float64(opts.Initial), slowStart: true,
		admitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shop_payments_admitted_total", Help: "Payments admitted within the admission bound (whatever their outcome after).",
		}),
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shop_payments_shed_total", Help: "Payments refused with 503 and Retry-After because the admission bound was reached; nothing was charged for them.",
		}),
	}
	a.gauges = []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_payment_admission_limit", Help: "The admission bound now: the most payments the service holds at once.",
		}, func() float64 { return float64(a.Limit()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_payments_in_flight", Help: "Payments admitted and not yet answered.",
		}, func() float64 { return float64(a.InFlight()) }),
	}
	return a
}

// Limit is the bound now.
func (a *Admission) Limit() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int(a.limit)
}

// Max is the largest the bound goes.
func (a *Admission) Max() int { return int(a.max) }

// InFlight is the payments admitted and not yet answered.
func (a *Admission) InFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inFlight
}

// Collectors are the admission's metrics.
func (a *Admission) Collectors() []prometheus.Collector {
	return append([]prometheus.Collector{a.admitted, a.shed}, a.gauges...)
}

// admit takes a place within the bound, or answers the refusal and returns
// false. A place taken is given back through the ticket's done.
func (a *Admission) admit(ctx context.Context, w http.ResponseWriter) (ticket, bool) {
	if !a.acquire(ctx) {
		a.shed.Inc()
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Retry-After", retryAfterSeconds)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write(overloadedBody)
		return ticket{}, false
	}
	a.admitted.Inc()
	return ticket{a: a, start: time.Now()}, true
}

// waiter is a payment waiting for a place.
type waiter struct {
	ready    chan struct{} // closed when it has one
	admitted bool          // under mu
}

func (a *Admission) acquire(ctx context.Context) bool {
	a.mu.Lock()
	if a.inFlight < int(a.limit) {
		a.take()
		a.mu.Unlock()
		return true
	}
	if len(a.queue) >= a.queueLimit {
		a.mu.Unlock()
		return false
	}
	w := &waiter{ready: make(chan struct{})}
	a.queue = append(a.queue, w)
	a.mu.Unlock()

	t := time.NewTimer(a.wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if w.admitted { // a place came as the wait ended
		return true
	}
	for i, q := range a.queue {
		if q == w {
			a.queue = append(a.queue[:i], a.queue[i+1:]...)
			break
		}
	}
	return false
}

// take counts a payment in; under mu.
func (a *Admission) take() {
	a.inFlight++
	a.win.peakUsed = max(a.win.peakUsed, a.inFlight)
}

// release gives back the place of a payment admitted at start, learning
// from its outcome, and hands the places free to the newest waiters.
func (a *Admission) release(start time.Time, o outcome) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inFlight--
	switch o {
	case acknowledged:
		a.win.acked++
		a.win.latency += now.Sub(start)
	case failed:
		a.win.failed++
	}
	a.learn(now)
	for a.inFlight < int(a.limit) && len(a.queue) > 0 {
		w := a.queue[len(a.queue)-1]
		a.queue = a.queue[:len(a.queue)-1]
		w.admitted = true
		a.take()
		close(w.ready)
	}
}

// learn moves the bound once a window has enough to say; under mu.
func (a *Admission) learn(now time.Time) {
	if a.win.start.IsZero() {
		a.win.start = now
	}
	if now.Sub(a.win.start) < windowLength || a.win.acked+a.win.failed < windowSamples {
		return
	}
	var mean time.Duration
	if a.win.acked > 0 {
		mean = a.win.latency / time.Duration(a.win.acked)
	}
	switch {
	case a.win.failed > 0 || mean > a.target:
		// Shrink in proportion to the miss, at most by half.
		ratio := 0.5
		if a.win.failed == 0 {
			ratio = math.Max(0.5, float64(a.target)/float64(mean))
		}
		a.limit = math.Max(a.min, a.limit*ratio)
		a.slowStart = false
	case float64(a.win.peakUsed) >= 0.9*a.limit:
		// Within the target and the bound in use: more may fit.
		grow := math.Sqrt(a.limit)
		if a.slowStart {
			grow = a.limit
		}
		a.limit = math.Min(a.max, a.limit+grow)
	}
	a.win = window{start: now, peakUsed: a.inFlight}
}

// ticket is an admitted payment's place, given back by done.
type ticket struct {
	a     *Admission
	start time.Time
}

// outcome is what became of an admitted payment, as the bound learns it.
type outcome int

const (
	// ignored: the payment never reached Kafka (invalid, replayed,
	// refused), so its latency says nothing of the pipeline.
	ignored outcome = iota
	// acknowledged: Kafka acknowledged the payment; its latency is a
	// sample of what the pipeline gives now.
	acknowledged
	// failed: Kafka did not acknowledge the payment, a sign of overload
	// downstream.
	failed
)

func (t ticket) done(o outcome) { t.a.release(t.start, o) }
