package payment

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/platinummonkey/go-concurrency-limits/core"
	"github.com/platinummonkey/go-concurrency-limits/limit"
	"github.com/platinummonkey/go-concurrency-limits/limiter"
	"github.com/platinummonkey/go-concurrency-limits/strategy"
	"github.com/prometheus/client_golang/prometheus"
)

// Admission bounds the payments the service holds at once. Past the bound a
// payment is refused at once with a 503 and Retry-After, before its body is
// read: a buyer told "not now" in a millisecond can retry, a buyer left
// waiting gives up, and may have been charged all the same.
//
// The bound follows the latency payments get from Kafka (Netflix's
// gradient algorithm): while the time from admission to acknowledgement
// stays near its long-run average the bound grows, and when it rises,
// because the brokers, the machine or the network are saturated, the bound
// shrinks, so that the payments in flight are those the pipeline can
// answer quickly. No fixed number is right on every machine and cluster.
type Admission struct {
	limiter *limiter.DefaultLimiter
	limit   *limit.Gradient2Limit

	admitted prometheus.Counter
	shed     prometheus.Counter
	gauges   prometheus.Collector
}

// AdmissionOptions tune the bound. The zero value is the default.
type AdmissionOptions struct {
	// Initial is the bound at start. Default 20.
	Initial int
	// Min is the smallest the bound goes: enough payments in flight to
	// keep the producer's batches full at any latency. Default 16.
	Min int
	// Max is the largest the bound goes, whatever the latency: the
	// producer buffers at most this many records, so a payment admitted
	// never waits for room in it. Default 1,000.
	Max int
}

func (o AdmissionOptions) withDefaults() AdmissionOptions {
	if o.Initial <= 0 {
		o.Initial = 20
	}
	if o.Min <= 0 {
		o.Min = min(16, o.Initial)
	}
	if o.Max <= 0 {
		o.Max = 1000
	}
	o.Min = min(o.Min, o.Max)
	o.Initial = min(max(o.Initial, o.Min), o.Max)
	return o
}

// retryAfter is the Retry-After of a refusal, in seconds: long enough for
// the bound to have moved, short enough that a buyer does not leave.
const retryAfter = 1

// overloadedBody is the answer to a payment refused for overload, written
// as it is: a refusal costs no encoding.
var overloadedBody = []byte(`{"status":"error","error":"the payment service is at capacity: nothing was charged; retry after ` +
	strconv.Itoa(retryAfter) + ` s","reason":"overloaded"}` + "\n")

// NewAdmission makes an admission bound with opts.
func NewAdmission(opts AdmissionOptions) *Admission {
	opts = opts.withDefaults()
	// The bound grows by up to the square root of itself per window while
	// latency holds (Netflix's default queue size), so that it finds a
	// larger machine's capacity in seconds, not minutes.
	queue := func(limit int) int { return max(4, isqrt(limit)) }
	grad, err := limit.NewGradient2Limit("payments", opts.Initial, opts.Max, opts.Min, queue, 0.2, 600, nil, nil)
	if err != nil {
		panic(err) // only for Min > Max, which withDefaults rules out
	}
	// Windows of 100 ms to 1 s with at least 20 payments each: the bound
	// moves several times a second under load.
	lim, err := limiter.NewDefaultLimiter(grad, int64(100*time.Millisecond), int64(time.Second), int64(100*time.Microsecond), 20,
		strategy.NewSimpleStrategy(opts.Initial), nil, core.EmptyMetricRegistryInstance)
	if err != nil {
		panic(err) // fixed, valid windows
	}
	a := &Admission{
		limiter: lim,
		limit:   grad,
		admitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shop_payments_admitted_total", Help: "Payments admitted within the admission bound (whatever their outcome after).",
		}),
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shop_payments_shed_total", Help: "Payments refused at once with 503 and Retry-After because the admission bound was reached; nothing was charged for them.",
		}),
	}
	a.gauges = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "shop_payment_admission_limit", Help: "The admission bound now: the most payments the service holds at once.",
	}, func() float64 { return float64(a.Limit()) })
	return a
}

// Limit is the bound now.
func (a *Admission) Limit() int { return a.limit.EstimatedLimit() }

// Collectors are the admission's metrics.
func (a *Admission) Collectors() []prometheus.Collector {
	return []prometheus.Collector{a.admitted, a.shed, a.gauges}
}

// admit takes a place within the bound, or answers the refusal and returns
// false. A place taken is given back through the ticket.
func (a *Admission) admit(ctx context.Context, w http.ResponseWriter) (ticket, bool) {
	l, ok := a.limiter.Acquire(ctx)
	if !ok {
		a.shed.Inc()
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Retry-After", strconv.Itoa(retryAfter))
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write(overloadedBody)
		return ticket{}, false
	}
	a.admitted.Inc()
	return ticket{l}, true
}

// ticket is an admitted payment's place, given back by done.
type ticket struct{ l core.Listener }

// outcome is what became of an admitted payment, as the bound learns it.
type outcome int

const (
	// ignored: the payment never reached Kafka (invalid, replayed,
	// refused), so its latency says nothing of the pipeline.
	ignored outcome = iota
	// acknowledged: Kafka acknowledged the payment; its latency is a
	// sample of what the pipeline gives now.
	acknowledged
	// failed: Kafka did not acknowledge the payment in time, a sign of
	// overload downstream.
	failed
)

func (t ticket) done(o outcome) {
	switch o {
	case acknowledged:
		t.l.OnSuccess()
	case failed:
		t.l.OnDropped()
	default:
		t.l.OnIgnore()
	}
}

func isqrt(n int) int {
	r := 0
	for (r+1)*(r+1) <= n {
		r++
	}
	return r
}
