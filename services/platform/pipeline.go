package platform

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/txn"
)

// keepRecent is how many of its latest outputs a pipeline keeps for its view.
const keepRecent = 1000

// lagEvery is how often a pipeline asks the cluster for its group's lag.
const lagEvery = 5 * time.Second

// Pipeline is the common body of the order and email services: an
// exactly-once stage from one topic to the next, and a view of the stage's
// committed outputs, read back from the output topic.
type Pipeline[Out any] struct {
	engine  *txn.Engine
	view    *Follower
	group   *GroupWatch
	output  *schemas.Codec[Out]
	recent  *Recent[Out]
	log     *slog.Logger
	name    string
	outputs string
	metrics *stageMetrics
	kafka   []prometheus.Collector // client metrics of the engine and the view
}

// NewPipeline connects a stage that writes Out records to output.
func NewPipeline[Out any](cfg Config, st Stage, output *schemas.Codec[Out]) (*Pipeline[Out], error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Pipeline[Out]{
		output:  output,
		recent:  NewRecent[Out](keepRecent),
		log:     cfg.Logger.With("service", st.Service, "instance", cfg.InstanceID),
		name:    st.Service,
		outputs: st.Outputs,
		metrics: newStageMetrics(st.Service),
	}
	engineKafka, viewKafka := KafkaMetrics("engine"), KafkaMetrics("view")
	p.kafka = []prometheus.Collector{engineKafka, viewKafka}
	st.Handler = p.metrics.timed(st.Handler)
	st.Tuning.Opts = append(slices.Clone(st.Tuning.Opts), kgo.WithHooks(engineKafka))
	var err error
	if p.engine, err = NewEngine(cfg, st); err != nil {
		return nil, err
	}
	p.engine.BatchObserver = p.metrics.observeBatch
	if p.view, err = NewFollower(cfg.Brokers, p.log, []string{output.Topic()}, kgo.WithHooks(viewKafka)); err != nil {
		return nil, err
	}
	p.group = NewGroupWatch(kadm.NewClient(p.view.Client()), lagEvery, p.log, Group(st.Service))
	return p, nil
}

// Run runs the stage and its view until ctx is cancelled.
func (p *Pipeline[Out]) Run(ctx context.Context) error {
	return RunAll(ctx,
		p.engine.Run,
		func(ctx context.Context) error { return p.view.Run(ctx, p.apply) },
		p.group.Run,
	)
}

// apply adds committed outputs to the view.
func (p *Pipeline[Out]) apply(recs []*kgo.Record) {
	for _, r := range recs {
		v, err := p.output.Decode(context.Background(), r.Value)
		if err != nil {
			p.log.Warn("unreadable record on the output topic", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			continue
		}
		p.recent.Add(*v)
	}
}

// Ready is nil once the stage has reached the cluster.
func (p *Pipeline[Out]) Ready(context.Context) error {
	if !p.engine.Ready() {
		return errors.New("not connected to the cluster yet")
	}
	return nil
}

// Collectors are the stage's metrics: its business counter, transactions,
// latencies, dead letters, lag, and its Kafka clients.
func (p *Pipeline[Out]) Collectors() []prometheus.Collector {
	cs := EngineCollectors(p.engine, p.name)
	if p.outputs != "" {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "shop_" + p.outputs + "_total",
			Help:        "Outputs committed by this instance (" + p.output.Topic() + ").",
			ConstLabels: prometheus.Labels{"service": p.name},
		}, func() float64 { return float64(p.engine.Stats().Produced) }))
	}
	cs = append(cs, p.metrics.collectors()...)
	cs = append(cs, p.group.LagCollector(Group(p.name), func() string {
		member, _ := p.engine.Client().GroupMetadata()
		return member
	}))
	return append(cs, p.kafka...)
}

// Newest is the count of committed outputs and the latest ones, newest first.
func (p *Pipeline[Out]) Newest(limit int) (int, []Out) { return p.recent.Newest(limit) }

// Logger is the stage's logger, with service and instance.
func (p *Pipeline[Out]) Logger() *slog.Logger { return p.log }
