// Package metrics builds the Prometheus collectors the services share: the
// franz-go client metrics of each Kafka client, and counters read at scrape
// time from the counts a service keeps.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
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
