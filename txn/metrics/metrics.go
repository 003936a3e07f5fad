// Package metrics builds the Prometheus collectors the services share: the
// franz-go client metrics of each Kafka client, and counters read at scrape
// time from the counts a service keeps.
package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// Kafka are the franz-go client metrics of one Kafka client (connections,
// bytes and records per broker and topic, request latency), under
// shop_kafka_*. client names the client within its service (producer,
// engine, view, follower) so that a service's clients do not add up on one
// series. Hook it into the client with kgo.WithHooks and return it from the
// service's Collectors: it registers on the service's registry, not on a
// global one.
func Kafka(client string) *kprom.Metrics {
	return kprom.NewMetrics("shop_kafka",
		kprom.Registry(nil),
		kprom.WithStaticLabel(prometheus.Labels{"client": client}),
		kprom.FetchAndProduceDetail(kprom.ByNode, kprom.ByTopic, kprom.Records, kprom.Batches, kprom.UncompressedBytes),
		kprom.Histograms(kprom.RequestDurationE2E),
	)
}

// LatestKafka are the client metrics of Kafka for an owner that may
// replace its client, as the transaction engine does after a transaction
// outlived its timeout: one kprom.Metrics serves one client, so each client
// gets its own from Hook, and a scrape reads the latest client's (its
// counters start again from zero, which Prometheus reads as a reset).
type LatestKafka struct {
	client string
	latest atomic.Pointer[kprom.Metrics]
}

// NewLatestKafka names the clients as Kafka does.
func NewLatestKafka(client string) *LatestKafka { return &LatestKafka{client: client} }

// Hooks gives the hooks of a new client: its metrics, and a hook after
// them that makes them the ones scraped once the client has set them up.
func (k *LatestKafka) Hooks() []kgo.Hook {
	m := Kafka(k.client)
	return []kgo.Hook{m, published{k, m}}
}

// published makes m the latest, after m's own OnNewClient (kgo calls hooks
// in order): a scrape before would read its collectors while they are made.
type published struct {
	k *LatestKafka
	m *kprom.Metrics
}

func (p published) OnNewClient(*kgo.Client) { p.k.latest.Store(p.m) }

// Describe describes nothing: the collector is unchecked, since what it
// collects changes with the client.
func (k *LatestKafka) Describe(chan<- *prometheus.Desc) {}

// Collect collects the latest client's metrics.
func (k *LatestKafka) Collect(ch chan<- prometheus.Metric) {
	if m := k.latest.Load(); m != nil {
		m.Collect(ch)
	}
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
