// Package analytics is the analytics service: it folds every committed event
// of the shop (payments, orders, emails, dead letters) into live figures on
// /analytics and /analytics/live, and shows them with the consumer groups on a
// live dashboard at /.
package analytics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/serve"
	"github.com/blackfriday-kafka/shop/txn/deadletter"
	"github.com/blackfriday-kafka/shop/txn/lag"
	"github.com/blackfriday-kafka/shop/txn/loop"
	"github.com/blackfriday-kafka/shop/txn/metrics"
	"github.com/blackfriday-kafka/shop/txn/sink"
	"github.com/blackfriday-kafka/shop/txn/view"
)

// Service is the analytics service.
//
// At start it loads its latest checkpoint (the figures and the offsets
// they cover, on analytics-checkpoints) and reads only the log after it,
// or the whole log without one, so the figures stay exact across restarts.
// It still commits its position to analytics-service-group, so that lag
// tools show how far behind it is.
type Service struct {
	cat       *schemas.Catalog
	log       *slog.Logger
	follow    *view.Follower
	folds     map[string]func(context.Context, *kgo.Record) error // by topic
	stats     *Stats
	groups    *lag.Watch           // the consumer groups, for the dashboard
	producers *producers           // the stages' transactions, for the dashboard
	edge      *edgeWatch           // the payment instances' admission, for the dashboard
	emails    *sink.Outcomes       // what became of the emails, for the dashboard
	kafka     prometheus.Collector // the follower's client metrics
}

// New connects the analytics service.
func New(cfg config.Config, cat *schemas.Catalog) (*Service, error) {
	s := &Service{
		cat:   cat,
		log:   cfg.Log().With("service", "analytics", "instance", cfg.InstanceID),
		stats: newStats(),
	}
	// And the email deliveries: the undelivered count the dashboard shows.
	s.emails = sink.NewOutcomes(s.log)
	// Each topic is read through its own entry of the table.
	s.folds = map[string]func(context.Context, *kgo.Record) error{
		schemas.Payments.Name: fold(cat, schemas.Payments, s.log, "payment counted", only(s.addPayment),
			func(p *schemas.PaymentSucceeded) slog.Attr { return slog.String("payment_id", p.PaymentID) }),
		schemas.Orders.Name: fold(cat, schemas.Orders, s.log, "order counted", only(s.stats.addOrder),
			func(o *schemas.OrderCreated) slog.Attr { return slog.String("order_id", o.OrderID) }),
		// An email counts, and joins the delivery states, from one decode.
		schemas.Emails.Name: fold(cat, schemas.Emails, s.log, "email counted", func(r *kgo.Record, e *schemas.EmailSent) {
			s.stats.addEmail(e)
			s.emails.Record(r.Partition, r.Offset, e.EmailID, e.Status == schemas.EmailQueued, e.SentAt)
		}, func(e *schemas.EmailSent) slog.Attr { return slog.String("email_id", e.EmailID) }),
		schemas.EmailDeliveries.Name: s.emails.Apply,
		schemas.Duplicates.Name: fold(cat, schemas.Duplicates, s.log, "duplicate payment taken back", only(s.stats.addDuplicate),
			func(d *schemas.PaymentDuplicate) slog.Attr { return slog.String("payment_id", d.PaymentID) }),
		schemas.PaymentDLQ.Name: s.deadLetter(schemas.PaymentDLQ.Codec(cat)),
		schemas.OrderDLQ.Name:   s.deadLetter(schemas.OrderDLQ.Codec(cat)),
	}
	kafka := metrics.Kafka("follower")
	s.kafka = kafka
	var err error
	s.follow, err = view.Follow(cfg.Brokers, s.log, append(schemas.TopicNames(), schemas.EmailDeliveries.Name), append(cfg.Connect(), kgo.WithHooks(kafka))...)
	if err != nil {
		return nil, err
	}
	if every := cfg.Checkpoints(); every > 0 {
		cps, err := view.OpenCheckpoints(cfg.Brokers, schemas.AnalyticsCheckpoints.Name, cfg.InstanceID, cfg.Connect()...)
		if err != nil {
			return nil, err
		}
		s.follow.Checkpointed(view.Composite(s.stats, s.emails), cps, every)
	}
	groups := kadm.NewClient(s.follow.Client())
	s.groups = lag.NewWatch(func() *kadm.Client { return groups }, groupsEvery, s.log, DashboardGroups...)
	if cfg.StallAfter > 0 {
		s.groups.StallAfter = cfg.StallAfter
	}
	s.producers = newProducers(kadm.NewClient(s.follow.Client()), groupsEvery, s.log,
		schemas.TransactionalID("order", ""), schemas.TransactionalID("email", ""))
	s.edge = newEdgeWatch(cfg.PaymentURLs, groupsEvery, s.log)
	return s, nil
}

func (s *Service) Name() string { return "analytics" }

// Healthy is nil: a record analytics cannot read is skipped (its consumer
// dead-letters it), so nothing stops the figures.
func (s *Service) Healthy() error { return nil }

func (s *Service) Collectors() []prometheus.Collector {
	classes := make([]string, len(schemas.ErrorClasses))
	for i, c := range schemas.ErrorClasses {
		classes[i] = string(c)
	}
	return []prometheus.Collector{
		metrics.CountsByLabel("shop_analytics_events_total", "Committed events folded into the figures, by topic.",
			"topic", nil, schemas.TopicNames(), s.stats.topicCounts),
		metrics.CountsByLabel("shop_analytics_dead_letters_total", "Dead letters on dlq-payment and dlq-order, by error_class.",
			"error_class", nil, classes, s.stats.deadLetterCounts),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shop_analytics_revenue_euros_total", Help: "Revenue of the committed orders, in euros (total_revenue of /analytics).",
		}, s.stats.revenueEuros),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_analytics_unique_users", Help: "Users who paid at least once.",
		}, func() float64 { return float64(s.stats.uniqueUsers()) }),
		s.kafka,
	}
}

func (s *Service) Routes(r *mux.Router) {
	r.HandleFunc("/analytics", func(w http.ResponseWriter, _ *http.Request) {
		serve.JSON(w, http.StatusOK, s.stats.report(time.Now()))
	}).Methods(http.MethodGet)
	r.HandleFunc("/analytics/live", func(w http.ResponseWriter, _ *http.Request) {
		serve.JSON(w, http.StatusOK, s.stats.live(time.Now()))
	}).Methods(http.MethodGet)
	s.dashboardRoutes(r)
}

// Run follows the log until ctx is cancelled.
func (s *Service) Run(ctx context.Context) error {
	if err := s.cat.Await(ctx, s.log, schemas.Topics()...); err != nil {
		return nil // stopped before the schemas were there
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.follow.Run(ctx, s.apply) })
	g.Go(func() error { return s.housekeeping(ctx) })
	g.Go(func() error { return s.groups.Run(ctx) })
	g.Go(func() error { return s.producers.Run(ctx) })
	g.Go(func() error { return s.edge.Run(ctx) })
	return g.Wait()
}

// Ready is nil once the shop's schemas are registered and the figures
// cover everything committed when the service started.
func (s *Service) Ready(ctx context.Context) error {
	if err := s.cat.Missing(schemas.Topics()...); err != nil {
		return err
	}
	if !s.follow.CaughtUp() {
		return errors.New("still reading the shop's history")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.follow.Client().Ping(ctx)
}

// apply folds a committed record into the figures. Poison on an input
// topic is skipped (the service that consumes it dead-letters it, and the
// dead letter is counted).
func (s *Service) apply(ctx context.Context, r *kgo.Record) error {
	return s.folds[r.Topic](ctx, r)
}

// fold decodes the records of topic t and adds each to the figures; the
// debug line names the event by id.
func fold[V any](cat *schemas.Catalog, t schemas.Topic[V], log *slog.Logger, msg string, add func(*kgo.Record, *V), id func(*V) slog.Attr) func(context.Context, *kgo.Record) error {
	codec := t.Codec(cat)
	return func(ctx context.Context, r *kgo.Record) error {
		v, err := codec.Decode(ctx, r.Value)
		if err != nil {
			return err
		}
		add(r, v)
		log.LogAttrs(ctx, slog.LevelDebug, msg, slog.String("topic", r.Topic), slog.Int("partition", int(r.Partition)),
			slog.Int64("offset", r.Offset), id(v))
		return nil
	}
}

// only is add for fold, which needs nothing of the record but its value.
func only[V any](add func(*V)) func(*kgo.Record, *V) { return func(_ *kgo.Record, v *V) { add(v) } }

// addPayment counts a valid payment; an invalid one is refused by the order
// service and counted as a dead letter.
func (s *Service) addPayment(p *schemas.PaymentSucceeded) {
	if schemas.ValidatePayment(p) == nil {
		s.stats.addPayment(p)
	}
}

// OtherErrorClass counts the dead letters whose class is none of the shop's.
const OtherErrorClass = "other"

// deadLetter counts the dead letters of a queue by error class: from the
// DeadLetter value, or from its header if the value does not decode.
func (s *Service) deadLetter(codec *schemas.Codec[schemas.DeadLetter]) func(context.Context, *kgo.Record) error {
	return func(ctx context.Context, r *kgo.Record) error {
		class := deadletter.Header(r, deadletter.HeaderErrorClass)
		if dl, err := codec.Decode(ctx, r.Value); err == nil {
			class = dl.ErrorClass
		}
		// Any producer may write a dead letter: a class of its own making
		// is counted as other (its text stays in the dead letter), so that
		// the counts and the dashboard's rows stay as few as the classes.
		if !slices.Contains(schemas.ErrorClasses, schemas.ErrorClass(class)) {
			class = OtherErrorClass
		}
		s.stats.addDeadLetter(r.Topic, class, r.Timestamp)
		s.log.Debug("dead letter counted", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
			"key", string(r.Key), "error_class", class)
		return nil
	}
}

// housekeeping drops old rate buckets and publishes the position to the
// group every few seconds.
func (s *Service) housekeeping(ctx context.Context) error {
	adm := kadm.NewClient(s.follow.Client())
	return loop.Every(ctx, 5*time.Second, func(now time.Time) {
		s.stats.forget(now)
		pos := make(kadm.Offsets)
		for topic, parts := range s.follow.Position() {
			for p, next := range parts {
				pos.AddOffset(topic, p, next, -1)
			}
		}
		if len(pos) == 0 {
			return
		}
		if _, err := adm.CommitOffsets(ctx, schemas.Group("analytics"), pos); err != nil && ctx.Err() == nil {
			s.log.Debug("publishing position to the group failed", "err", err)
		}
	})
}
