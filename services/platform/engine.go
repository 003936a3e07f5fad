package platform

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/txn"
)

// Stage is an exactly-once step of the pipeline: a consumer group reading one
// topic and a handler writing the next, with poison to a dead letter queue.
type Stage struct {
	Service string // order or email: names the group and transactional ID
	Input   string
	DLQ     *schemas.Codec[schemas.DeadLetter]
	Handler txn.Handler
	Tuning  txn.Config // batching and timeouts; zero values take defaults
	// Outputs names the stage's outputs for their business counter,
	// shop_<Outputs>_total, such as orders_created.
	Outputs string
}

// Group is the consumer group of a service, such as order-service-group.
func Group(service string) string { return service + "-service-group" }

// TransactionalID is stable per service instance: a restarted instance
// fences the transactions its previous incarnation left open.
func TransactionalID(service, instance string) string {
	return service + "-service-" + instance
}

// NewEngine builds the exactly-once engine of a stage.
func NewEngine(cfg Config, st Stage) (*txn.Engine, error) {
	tc := st.Tuning
	tc.Brokers = cfg.Brokers
	tc.Group = Group(st.Service)
	tc.Topic = st.Input
	tc.TransactionalID = TransactionalID(st.Service, cfg.InstanceID)
	tc.InstanceID = tc.TransactionalID
	if cfg.AtLeastOnce {
		tc.Mode = txn.AtLeastOnce
	}
	tc.Handler = st.Handler
	tc.Logger = cfg.Logger.With("service", st.Service, "instance", cfg.InstanceID)
	tc.DeadLetter = func(in *kgo.Record, class string, reason error) (*kgo.Record, error) {
		return schemas.DeadLetterRecord(st.DLQ, st.Service, in, class, reason)
	}
	return txn.New(tc)
}

// EngineCollectors exports an engine's counters to Prometheus.
func EngineCollectors(e *txn.Engine, service string) []prometheus.Collector {
	labels := prometheus.Labels{"service": service}
	counter := func(name, help string, read func(txn.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: name, Help: help, ConstLabels: labels,
		}, func() float64 { return float64(read(e.Stats())) })
	}
	return []prometheus.Collector{
		counter("shop_transactions_committed_total", "Kafka transactions committed.", func(s txn.Stats) int64 { return s.Committed }),
		counter("shop_transactions_aborted_total", "Kafka transactions aborted and retried.", func(s txn.Stats) int64 { return s.Aborted }),
		counter("shop_records_consumed_total", "Input records committed.", func(s txn.Stats) int64 { return s.Records }),
		counter("shop_records_produced_total", "Output records committed, dead letters excluded.", func(s txn.Stats) int64 { return s.Produced }),
		CountsByLabel("shop_dead_letters_total", "Input records committed to the dead letter queue, by error_class.",
			"error_class", labels, ErrorClasses, func() map[string]int64 { return e.Stats().DeadLettersByClass }),
	}
}
