// Package stage is one exactly-once step of the shop: the txn engine from
// one topic to the next, behind the dead-letter middleware, with the
// metrics, the readiness and the health of the step. The order and email
// services are a stage each, plus their view.
package stage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/txn"
	"github.com/blackfriday-kafka/shop/txn/deadletter"
	"github.com/blackfriday-kafka/shop/txn/lag"
	"github.com/blackfriday-kafka/shop/txn/metrics"
	"github.com/blackfriday-kafka/shop/txn/view"
)

// Options say how a stage runs: where the cluster is, which instance this
// is, and the bounds of its engine. The zero value of a bound takes the
// engine's default.
type Options struct {
	Brokers []string
	// Connect are the options any client needs to reach the cluster
	// besides Brokers, such as SASL credentials.
	Connect    []kgo.Opt
	InstanceID string // the instance's name in its group, part of its transactional ID
	Logger     *slog.Logger
	// AtLeastOnce runs the stage without transactions and without its
	// Store: the control that shows what transactions prevent.
	AtLeastOnce bool
	MaxRecords  int
	MaxInterval time.Duration
	StallAfter  time.Duration
	// Checkpoints is how often a Service's view saves a checkpoint; 0
	// saves none, and the view reads its topic from the start.
	Checkpoints time.Duration
}

func (o Options) log() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

// Spec says what a stage does.
type Spec struct {
	Service string        // order or email: names the group and the transactional ID
	Input   *schemas.Spec // the topic it consumes
	DLQ     schemas.Topic[schemas.DeadLetter]
	// Writes are the topics its handler writes, besides the DLQ, its main
	// output first: their schemas must be registered before it starts.
	Writes  []*schemas.Spec
	Handler txn.Handler
	// Outputs names the business counter of its committed outputs,
	// shop_<Outputs>_total, such as orders_created.
	Outputs string
	// Store, if set, is state the handler keeps per input partition. It
	// is not used in at-least-once mode: the control shows what
	// transactions alone prevent.
	Store Store
}

// Store is state that a stage's handler keeps per partition of its input,
// as a Kafka Streams state store: restored from Kafka when the group assigns
// the partition, before its first record is handled; what a transaction
// changed in it is kept when the transaction commits, dropped when it
// aborts.
type Store interface {
	Restore(ctx context.Context, partitions []int32)
	Drop(partitions []int32)
	// Commit keeps what the transaction added.
	Commit()
	Abort()
}

// lagEvery is how often a stage asks the cluster for its group's lag.
const lagEvery = 5 * time.Second

// Stage is a running step.
type Stage struct {
	spec   Spec
	cat    *schemas.Catalog
	log    *slog.Logger
	engine *txn.Engine
	watch  *lag.Watch
	kafka  prometheus.Collector // the engine's client metrics

	transform *prometheus.HistogramVec // per record, by outcome
	records   *prometheus.HistogramVec // per transaction, by outcome
	took      *prometheus.HistogramVec // per transaction, by outcome

	mu      sync.Mutex
	byTopic map[string]int64 // committed outputs, dead letters excluded
	dead    map[string]int64 // committed dead letters, by error class
}

// New connects a stage.
func New(opts Options, cat *schemas.Catalog, spec Spec) (*Stage, error) {
	labels := prometheus.Labels{"service": spec.Service}
	s := &Stage{
		spec:    spec,
		cat:     cat,
		log:     opts.log().With("service", spec.Service, "instance", opts.InstanceID),
		dead:    make(map[string]int64),
		byTopic: make(map[string]int64),
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
			Buckets:     prometheus.ExponentialBuckets(0.001, 2, 14), // 1ms to 8s
		}, []string{"outcome"}),
	}
	kafka := metrics.NewLatestKafka("engine")
	s.kafka = kafka
	if opts.AtLeastOnce {
		s.spec.Store = nil
	}
	letters := deadletter.Letters{Codec: spec.DLQ.Codec(cat), Service: spec.Service, Logger: s.log}
	mode := txn.ExactlyOnce
	if opts.AtLeastOnce {
		mode = txn.AtLeastOnce
	}
	id := schemas.TransactionalID(spec.Service, opts.InstanceID)
	var err error
	s.engine, err = txn.New(txn.Config{
		Brokers:         opts.Brokers,
		Connect:         opts.Connect,
		Group:           schemas.Group(spec.Service),
		Topic:           spec.Input.Name,
		TransactionalID: id,
		InstanceID:      id,
		Handler:         txn.Chain(spec.Handler, letters.Middleware, s.timed),
		Mode:            mode,
		MaxRecords:      opts.MaxRecords,
		MaxInterval:     opts.MaxInterval,
		StallAfter:      opts.StallAfter,
		Logger:          s.log,
		Hooks:           kafka.Hooks,
		OnBatch:         s.observe,
		OnAssigned:      s.restore,
		OnRevoked:       s.drop,
	})
	if err != nil {
		return nil, err
	}
	s.watch = lag.NewWatch(func() *kadm.Client { return kadm.NewClient(s.engine.Client()) }, lagEvery, s.log, schemas.Group(spec.Service))
	if opts.StallAfter > 0 {
		s.watch.StallAfter = opts.StallAfter
	}
	return s, nil
}

// schemas are the topics whose schemas the stage writes with.
func (s *Stage) schemas() []*schemas.Spec {
	return append([]*schemas.Spec{s.spec.DLQ.Spec}, s.spec.Writes...)
}

// Run waits for the stage's schemas, then runs the engine until ctx is
// cancelled.
func (s *Stage) Run(ctx context.Context) error {
	if err := s.cat.Await(ctx, s.log, s.schemas()...); err != nil {
		return nil // stopped before the schemas were there
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.engine.Run(ctx) })
	g.Go(func() error { return s.watch.Run(ctx) })
	return g.Wait()
}

// Ready is nil once the stage's schemas are registered and it has reached
// the cluster.
func (s *Stage) Ready(context.Context) error {
	if err := s.cat.Missing(s.schemas()...); err != nil {
		return err
	}
	if !s.engine.Ready() {
		return errors.New("not connected to the cluster yet")
	}
	return nil
}

// Healthy is nil unless the stage has retried the same records for longer
// than the engine's bound (a minute).
func (s *Stage) Healthy() error {
	if st, ok := s.engine.Stalled(); ok {
		return fmt.Errorf("stalled: %s", st)
	}
	return nil
}

// Logger is the stage's logger, with service and instance.
func (s *Stage) Logger() *slog.Logger { return s.log }

// timed measures the handler, poison and all.
func (s *Stage) timed(h txn.Handler) txn.Handler {
	return func(ctx context.Context, in *kgo.Record) ([]*kgo.Record, error) {
		start := time.Now()
		out, err := h(ctx, in)
		outcome := "ok"
		if err != nil {
			outcome = "error"
			if _, poison := errors.AsType[deadletter.Poison](err); poison {
				outcome = "poison"
			}
		}
		s.transform.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
		return out, err
	}
}

func (s *Stage) restore(ctx context.Context, partitions []int32) {
	if s.spec.Store != nil {
		s.spec.Store.Restore(ctx, partitions)
	}
}

func (s *Stage) drop(partitions []int32) {
	if s.spec.Store != nil {
		s.spec.Store.Drop(partitions)
	}
}

// observe ends each transaction for the store, and counts what it
// committed.
func (s *Stage) observe(b txn.Batch) {
	if st := s.spec.Store; st != nil {
		if b.Committed {
			st.Commit()
		} else {
			st.Abort()
		}
	}
	outcome := "aborted"
	if b.Committed {
		outcome = "committed"
		s.mu.Lock()
		for _, r := range b.Outputs {
			if r.Topic == s.spec.DLQ.Name {
				s.dead[deadletter.Header(r, deadletter.HeaderErrorClass)]++
			} else {
				s.byTopic[r.Topic]++
			}
		}
		s.mu.Unlock()
	}
	s.records.WithLabelValues(outcome).Observe(float64(b.Records))
	s.took.WithLabelValues(outcome).Observe(b.Took.Seconds())
}

// Collectors are the stage's metrics: its business counter, transactions,
// latencies, dead letters, stall, lag, and its Kafka client.
func (s *Stage) Collectors() []prometheus.Collector {
	labels := prometheus.Labels{"service": s.spec.Service}
	stats := func(name, help string, read func(txn.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(read(s.engine.Stats())) })
	}
	produced := func(topics ...*schemas.Spec) func() float64 {
		return func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			var n int64
			for _, t := range topics {
				n += s.byTopic[t.Name]
			}
			return float64(n)
		}
	}
	var writes []string
	for _, t := range s.spec.Writes {
		writes = append(writes, t.Name)
	}
	classes := make([]string, len(schemas.ErrorClasses))
	for i, c := range schemas.ErrorClasses {
		classes[i] = string(c)
	}
	cs := []prometheus.Collector{
		stats("shop_transactions_committed_total", "Kafka transactions committed.", func(st txn.Stats) int64 { return st.Committed }),
		stats("shop_transactions_aborted_total", "Kafka transactions aborted and retried.", func(st txn.Stats) int64 { return st.Aborted }),
		stats("shop_records_consumed_total", "Input records committed.", func(st txn.Stats) int64 { return st.Records }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "shop_records_produced_total",
			Help: "Output records committed, dead letters excluded.", ConstLabels: labels}, produced(s.spec.Writes...)),
		metrics.CountsByLabel("shop_outputs_total", "Output records committed, by topic (dead letters are shop_dead_letters_total).",
			"topic", labels, writes, func() map[string]int64 {
				s.mu.Lock()
				defer s.mu.Unlock()
				return maps.Clone(s.byTopic)
			}),
		metrics.CountsByLabel("shop_dead_letters_total", "Input records committed to the dead letter queue, by error_class.",
			"error_class", labels, classes, func() map[string]int64 {
				s.mu.Lock()
				defer s.mu.Unlock()
				return maps.Clone(s.dead)
			}),
		metrics.CountsByLabel("shop_producer_recoveries_total",
			"What the Kafka client did on its own to keep transactions going, by kind: refused_batch (resent after a metadata refresh), producer_reset (a batch error failed the producer; the transaction aborted), epoch_bump (the producer re-initialised), retried_end (a commit or abort failed and was settled), new_producer (the coordinator aborted a transaction that outlived its timeout; the engine replaced its client).",
			"kind", labels, []string{"refused_batch", "producer_reset", "epoch_bump", "retried_end", "new_producer"}, func() map[string]int64 {
				st := s.engine.Stats()
				return map[string]int64{"refused_batch": st.RefusedBatches, "producer_reset": st.ProducerResets,
					"epoch_bump": st.EpochBumps, "retried_end": st.RetriedEnds, "new_producer": st.Renewals}
			}),
		stats("shop_add_partitions_requests_total", "AddPartitionsToTxn requests; more than one per broker and transaction are CONCURRENT_TRANSACTIONS retries.",
			func(st txn.Stats) int64 { return st.AddPartitions }),
		stallCollector{s},
		s.transform, s.records, s.took,
		s.watch.Collector(schemas.Group(s.spec.Service), func() string {
			member, _ := s.engine.Client().GroupMetadata()
			return member
		}),
		s.kafka,
	}
	if s.spec.Outputs != "" {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "shop_" + s.spec.Outputs + "_total",
			Help:        "Records this instance committed to " + s.spec.Writes[0].Name + ".",
			ConstLabels: labels,
		}, produced(s.spec.Writes[0])))
	}
	return cs
}

// stallCollector exports the stall of the stage, while there is one, as
// shop_stage_stalled_since_seconds: the partition it is stuck on and the
// time of the first failure.
type stallCollector struct{ s *Stage }

var stallDesc = prometheus.NewDesc("shop_stage_stalled_since_seconds",
	"Unix time since which the stage has retried the same records without committing, for the partition it is stuck on; absent while it makes progress.",
	[]string{"service", "topic", "partition"}, nil)

func (c stallCollector) Describe(ch chan<- *prometheus.Desc) { ch <- stallDesc }

func (c stallCollector) Collect(ch chan<- prometheus.Metric) {
	if st, ok := c.s.engine.Stalled(); ok {
		ch <- prometheus.MustNewConstMetric(stallDesc, prometheus.GaugeValue, float64(st.Since.Unix()),
			c.s.spec.Service, st.Topic, strconv.Itoa(int(st.Partition)))
	}
}

// Service is a stage with the view of the outputs it committed: the body of
// the order and email services, whose own code is the business step and
// the routes.
type Service[Out any] struct {
	*Stage
	Outputs *view.Latest[Out]
}

// NewService connects a stage and its view of output, keeping the newest
// keep values, checkpointed on the state topic checkpoints.
func NewService[Out any](opts Options, cat *schemas.Catalog, spec Spec, output schemas.Topic[Out], keep int, checkpoints schemas.StateTopic) (*Service[Out], error) {
	st, err := New(opts, cat, spec)
	if err != nil {
		return nil, err
	}
	var cps *view.Checkpoints
	if opts.Checkpoints > 0 {
		if cps, err = view.OpenCheckpoints(opts.Brokers, checkpoints.Name, opts.InstanceID, opts.Connect...); err != nil {
			return nil, err
		}
	}
	outputs, err := view.NewLatest(opts.Brokers, output.Codec(cat), keep, st.log, cps, opts.Checkpoints, opts.Connect...)
	if err != nil {
		return nil, err
	}
	return &Service[Out]{Stage: st, Outputs: outputs}, nil
}

// Ready is nil once the stage is ready and the view shows everything
// committed when it started.
func (s *Service[Out]) Ready(ctx context.Context) error {
	if err := s.Stage.Ready(ctx); err != nil {
		return err
	}
	if !s.Outputs.CaughtUp() {
		return errors.New("still reading the committed outputs")
	}
	return nil
}

// Run runs the stage and the view until ctx is cancelled.
func (s *Service[Out]) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Stage.Run(ctx) })
	g.Go(func() error { return s.Outputs.Run(ctx) })
	return g.Wait()
}

// Collectors are the stage's metrics and the view's client metrics.
func (s *Service[Out]) Collectors() []prometheus.Collector {
	return append(s.Stage.Collectors(), s.Outputs.Collector())
}
