package platform

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/txn"
)

// KafkaMetrics are the franz-go client metrics of one Kafka client
// (connections, bytes and records per broker and topic, request latency),
// under shop_kafka_*. client names the client within its service (producer,
// engine, view, follower) so that a service's clients do not add up on one
// series. Hook it into the client with kgo.WithHooks and return it from the
// service's Collectors: it registers on the service's registry, not on a
// global one.
func KafkaMetrics(client string) *kprom.Metrics {
	return kprom.NewMetrics("shop_kafka",
		kprom.Registry(nil),
		kprom.WithStaticLabel(prometheus.Labels{"client": client}),
		kprom.FetchAndProduceDetail(kprom.ByNode, kprom.ByTopic, kprom.Records, kprom.Batches, kprom.UncompressedBytes),
		kprom.Histograms(kprom.RequestDurationE2E),
	)
}

// stageMetrics are the latency and batch series of an exactly-once stage;
// the engine's counters (EngineCollectors) complete them.
type stageMetrics struct {
	transform *prometheus.HistogramVec // per record, by outcome
	records   *prometheus.HistogramVec // per transaction, by outcome
	took      *prometheus.HistogramVec // per transaction, by outcome
}

func newStageMetrics(service string) *stageMetrics {
	labels := prometheus.Labels{"service": service}
	return &stageMetrics{
		transform: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "shop_transform_seconds",
			Help:        "Time the business step takes per input record (PROCESSING_DELAY included), by outcome: ok, poison (to the DLQ) or error (transaction retried).",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(0.0001, 2, 16), // 100µs to 3.3s
		}, []string{"outcome"}),
		records: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "shop_transaction_records",
			Help:        "Input records per Kafka transaction, by outcome: committed or aborted.",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(1, 2, 11), // 1 to 1024
		}, []string{"outcome"}),
		took: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "shop_transaction_seconds",
			Help:        "Time from the start of a Kafka transaction to its commit or abort, by outcome.",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(0.005, 2, 12), // 5ms to 10s
		}, []string{"outcome"}),
	}
}

// timed measures a handler.
func (m *stageMetrics) timed(h txn.Handler) txn.Handler {
	return func(ctx context.Context, in *kgo.Record) ([]*kgo.Record, error) {
		start := time.Now()
		out, err := h(ctx, in)
		outcome := "ok"
		if err != nil {
			outcome = "error"
			if _, poison := errors.AsType[txn.Poison](err); poison {
				outcome = "poison"
			}
		}
		m.transform.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
		return out, err
	}
}

// observeBatch is the engine's BatchObserver.
func (m *stageMetrics) observeBatch(records int, committed bool, took time.Duration) {
	outcome := "aborted"
	if committed {
		outcome = "committed"
	}
	m.records.WithLabelValues(outcome).Observe(float64(records))
	m.took.WithLabelValues(outcome).Observe(took.Seconds())
}

func (m *stageMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.transform, m.records, m.took}
}

// ErrorClasses are the DLQ's error classes, so that each class has a series
// from the start, at zero, rather than appearing with its first dead letter.
var ErrorClasses = []string{
	string(schemas.BadMagicByte), string(schemas.UnknownSchemaID), string(schemas.WrongSubject),
	string(schemas.AvroDecode), string(schemas.Validation), string(schemas.EmptyValue),
}

// countsByLabel exports a set of counters that share a name and differ by
// one label, read at each scrape from counts.
type countsByLabel struct {
	desc   *prometheus.Desc
	always []string // label values shown even at zero
	counts func() map[string]int64
}

// CountsByLabel is a counter family named name, split by label, whose
// values counts returns at each scrape; always lists the label values
// that have a series even at zero.
func CountsByLabel(name, help, label string, constLabels prometheus.Labels, always []string, counts func() map[string]int64) prometheus.Collector {
	return &countsByLabel{
		desc:   prometheus.NewDesc(name, help, []string{label}, constLabels),
		always: always,
		counts: counts,
	}
}

func (c *countsByLabel) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *countsByLabel) Collect(ch chan<- prometheus.Metric) {
	counts := c.counts()
	for _, v := range c.always {
		if _, ok := counts[v]; !ok {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, 0, v)
		}
	}
	for v, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), v)
	}
}
