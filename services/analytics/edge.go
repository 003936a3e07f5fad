package analytics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/blackfriday-kafka/shop/txn/loop"
	"github.com/blackfriday-kafka/shop/txn/metrics"
)

// Edge is the payment service's admission as the dashboard shows it: what
// its instances admitted and shed since they started, and their bounds
// now, read from their /metrics.
type Edge struct {
	Instances   int       `json:"instances"` // that answered
	Unreachable []string  `json:"unreachable,omitempty"`
	Admitted    float64   `json:"admitted"`
	Shed        float64   `json:"shed"`
	Limit       float64   `json:"limit"`     // the bounds added up
	InFlight    float64   `json:"in_flight"` // payments admitted, not yet answered
	At          time.Time `json:"at"`
}

// edgeWatch reads the payment instances' admission every interval.
type edgeWatch struct {
	urls  []string
	every time.Duration
	log   *slog.Logger

	mu   sync.RWMutex
	last Edge
}

func newEdgeWatch(urls []string, every time.Duration, log *slog.Logger) *edgeWatch {
	return &edgeWatch{urls: urls, every: every, log: log}
}

func (e *edgeWatch) Run(ctx context.Context) error {
	e.refresh()
	return loop.Every(ctx, e.every, func(time.Time) { e.refresh() })
}

func (e *edgeWatch) refresh() {
	next := Edge{At: time.Now().UTC()}
	for _, u := range e.urls {
		fams, err := metrics.Scrape(u + "/metrics")
		if err != nil {
			next.Unreachable = append(next.Unreachable, u)
			e.log.Debug("payment instance not read", "url", u, "err", err)
			continue
		}
		next.Instances++
		next.Admitted += sum(fams, "shop_payments_admitted_total")
		next.Shed += sum(fams, "shop_payments_shed_total")
		next.Limit += sum(fams, "shop_payment_admission_limit")
		next.InFlight += sum(fams, "shop_payments_in_flight")
	}
	e.mu.Lock()
	e.last = next
	e.mu.Unlock()
}

// Last is the admission as last read.
func (e *edgeWatch) Last() Edge {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.last
}

// sum is the value of a family of a payment instance's metrics, 0 when it
// has none.
func sum(fams map[string]*dto.MetricFamily, name string) float64 {
	v, _ := metrics.Sum(fams, name, nil)
	return v
}
