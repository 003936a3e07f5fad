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
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

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
// Its instances share the shop's partitions through analytics-service-group:
// each folds the partitions the group gives it (partition p of every topic
// together) into figures of their own, checkpointed under the partition's
// number on analytics-checkpoints, so that a partition that changes hands
// goes on from its last checkpoint. A request to any instance gathers the
// figures of every partition from their owners (see gather.go).
type Service struct {
	gathering  singleflight.Group // one gather of the shop's figures at a time, shared
	cat        *schemas.Catalog
	log        *slog.Logger
	instance   string                                                      // its name in the group and in answers
	figures    *view.Partitioned[*Stats]                                   // the partitions this instance holds
	deliveries *view.Follower                                              // email-sent and email-deliveries, all partitions
	folds      map[string]func(context.Context, *Stats, *kgo.Record) error // by topic
	address    atomic.Pointer[string]                                      // this instance's base URL, as the others reach it
	http       *http.Client                                                // to the other instances
	groups     *lag.Watch                                                  // the consumer groups, for the dashboard
	producers  *producers                                                  // the stages' transactions, for the dashboard
	edge       *edgeWatch                                                  // the payment instances' admission, for the dashboard
	emailCodec *schemas.Codec[schemas.EmailSent]
	emails     *sink.Outcomes         // what became of the emails, for the dashboard
	kafka      []prometheus.Collector // the clients' metrics
}

// New connects the analytics service.
func New(cfg config.Config, cat *schemas.Catalog) (*Service, error) {
	s := &Service{
		cat:      cat,
		log:      cfg.Log().With("service", "analytics", "instance", cfg.InstanceID),
		instance: schemas.TransactionalID("analytics", cfg.InstanceID), // analytics-service-2
		http:     &http.Client{Timeout: gatherTimeout},
	}
	// And the email deliveries: the undelivered count the dashboard shows.
	s.emails, s.emailCodec = sink.NewOutcomes(s.log), schemas.Emails.Codec(cat)
	// Each topic is read through its own entry of the table.
	s.folds = map[string]func(context.Context, *Stats, *kgo.Record) error{
		schemas.Payments.Name: fold(cat, schemas.Payments, s.log, "payment counted", (*Stats).addValidPayment,
			func(p *schemas.PaymentSucceeded) slog.Attr { return slog.String("payment_id", p.PaymentID) }),
		schemas.Orders.Name: fold(cat, schemas.Orders, s.log, "order counted", (*Stats).addOrder,
			func(o *schemas.OrderCreated) slog.Attr { return slog.String("order_id", o.OrderID) }),
		schemas.Emails.Name: fold(cat, schemas.Emails, s.log, "email counted", (*Stats).addEmail,
			func(e *schemas.EmailSent) slog.Attr { return slog.String("email_id", e.EmailID) }),
		schemas.Duplicates.Name: fold(cat, schemas.Duplicates, s.log, "duplicate payment taken back", (*Stats).addDuplicate,
			func(d *schemas.PaymentDuplicate) slog.Attr { return slog.String("payment_id", d.PaymentID) }),
		schemas.PaymentDLQ.Name: s.deadLetter(schemas.PaymentDLQ.Codec(cat)),
		schemas.OrderDLQ.Name:   s.deadLetter(schemas.OrderDLQ.Codec(cat)),
	}
	// One kprom.Metrics serves one client: the group member's, and the
	// delivery states' reader's.
	member, reader := metrics.Kafka("follower"), metrics.Kafka("deliveries")
	s.kafka = []prometheus.Collector{member, reader}
	var figures, deliveries *view.Checkpoints
	if cfg.Checkpoints() > 0 {
		var err error
		if figures, err = view.OpenCheckpoints(cfg.Brokers, schemas.AnalyticsCheckpoints.Name, cfg.InstanceID, cfg.Connect()...); err != nil {
			return nil, err
		}
		// A writer of its own: a transactional ID writes one
		// checkpoint at a time.
		if deliveries, err = view.OpenCheckpoints(cfg.Brokers, schemas.AnalyticsCheckpoints.Name, cfg.InstanceID+"-deliveries", cfg.Connect()...); err != nil {
			return nil, err
		}
	}
	var err error
	s.figures, err = view.FollowPartitioned(view.PartitionedConfig[*Stats]{
		Brokers: cfg.Brokers, Group: schemas.Group("analytics"), Topics: schemas.TopicNames(), Log: s.log,
		Fresh: newStats, Address: s.Address, Checkpoints: figures, Every: cfg.Checkpoints(),
		// The dashboard's groups panel names the member by it.
		Opts: append(cfg.Connect(), kgo.WithHooks(member), kgo.ClientID(s.instance)),
	})
	if err != nil {
		return nil, err
	}
	// The delivery states join email-sent with email-deliveries, which is
	// keyed by email_id, not by user: the join does not split by
	// partition, so each instance keeps all of it (it is small).
	s.deliveries, err = view.Follow(cfg.Brokers, s.log, []string{schemas.Emails.Name, schemas.EmailDeliveries.Name},
		append(cfg.Connect(), kgo.WithHooks(reader))...)
	if err != nil {
		return nil, err
	}
	if deliveries != nil {
		s.deliveries.Checkpointed(s.emails, deliveries, cfg.Checkpoints())
	}
	groups := kadm.NewClient(s.deliveries.Client())
	s.groups = lag.NewWatch(func() *kadm.Client { return groups }, groupsEvery, s.log, DashboardGroups...)
	if cfg.StallAfter > 0 {
		s.groups.StallAfter = cfg.StallAfter
	}
	s.producers = newProducers(kadm.NewClient(s.deliveries.Client()), groupsEvery, s.log,
		schemas.TransactionalID("order", ""), schemas.TransactionalID("email", ""))
	s.edge = newEdgeWatch(cfg.PaymentURLs, groupsEvery, s.log)
	return s, nil
}

// Advertise sets the base URL the other instances reach this one at; the
// shop calls it once the service listens, before Run.
func (s *Service) Advertise(url string) { s.address.Store(&url) }

// Address is the base URL this instance advertises to the group.
func (s *Service) Address() string {
	if a := s.address.Load(); a != nil {
		return *a
	}
	return ""
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
	// The figures of the partitions this instance holds: summed over the
	// instances, they are the shop's.
	return append([]prometheus.Collector{
		metrics.CountsByLabel("shop_analytics_events_total", "Committed events folded into the figures of the partitions this instance holds, by topic.",
			"topic", nil, schemas.TopicNames(), func() map[string]int64 { return s.heldStats().topicCounts() }),
		metrics.CountsByLabel("shop_analytics_dead_letters_total", "Dead letters on dlq-payment and dlq-order of the partitions this instance holds, by error_class.",
			"error_class", nil, classes, func() map[string]int64 { return s.heldStats().deadLetterCounts() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shop_analytics_revenue_euros_total", Help: "Revenue of the committed orders of the partitions this instance holds, in euros (total_revenue of /analytics for all).",
		}, func() float64 { return s.heldStats().revenueEuros() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_analytics_unique_users", Help: "Users who paid at least once, in the partitions this instance holds (each user is in one).",
		}, func() float64 { return float64(s.heldStats().uniqueUsers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_analytics_partitions_held", Help: "Partition numbers this instance holds in analytics-service-group.",
		}, func() float64 { return float64(len(s.figures.Owned())) }),
	}, s.kafka...)
}

func (s *Service) Routes(r *mux.Router) {
	r.HandleFunc("/analytics", func(w http.ResponseWriter, req *http.Request) {
		figures, cov := s.gather(req.Context())
		serve.JSON(w, http.StatusOK, ReportAll{Report: figures.report(time.Now()), Coverage: cov})
	}).Methods(http.MethodGet)
	r.HandleFunc("/analytics/live", func(w http.ResponseWriter, req *http.Request) {
		figures, cov := s.gather(req.Context())
		serve.JSON(w, http.StatusOK, LiveAll{Live: figures.live(time.Now()), Coverage: cov})
	}).Methods(http.MethodGet)
	r.HandleFunc(partitionsPath, func(w http.ResponseWriter, _ *http.Request) {
		held, err := s.held(true)
		if err != nil {
			serve.JSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		serve.JSON(w, http.StatusOK, held)
	}).Methods(http.MethodGet)
	s.dashboardRoutes(r)
}

// Run follows the log until ctx is cancelled.
func (s *Service) Run(ctx context.Context) error {
	if err := s.cat.Await(ctx, s.log, schemas.Topics()...); err != nil {
		return nil // stopped before the schemas were there
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.figures.Run(ctx, s.apply) })
	g.Go(func() error { return s.deliveries.Run(ctx, s.applyDelivery) })
	g.Go(func() error { return s.housekeeping(ctx) })
	g.Go(func() error { return s.groups.Run(ctx) })
	g.Go(func() error { return s.producers.Run(ctx) })
	g.Go(func() error { return s.edge.Run(ctx) })
	return g.Wait()
}

// Ready is nil once the shop's schemas are registered, the group has given
// this instance its partitions and their figures cover everything
// committed when they came, and the delivery states are caught up too.
func (s *Service) Ready(ctx context.Context) error {
	if err := s.cat.Missing(schemas.Topics()...); err != nil {
		return err
	}
	if !s.figures.Ready() || !s.deliveries.CaughtUp() {
		return errors.New("still reading the shop's history")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.figures.Client().Ping(ctx)
}

// apply folds a committed record into the figures of its partition.
// Poison on an input topic is skipped (the service that consumes it
// dead-letters it, and the dead letter is counted).
func (s *Service) apply(ctx context.Context, st *Stats, r *kgo.Record) error {
	return s.folds[r.Topic](ctx, st, r)
}

// applyDelivery folds a committed email or delivery record into the
// delivery states.
func (s *Service) applyDelivery(ctx context.Context, r *kgo.Record) error {
	if r.Topic == schemas.EmailDeliveries.Name {
		return s.emails.Apply(ctx, r)
	}
	e, err := s.emailCodec.Decode(ctx, r.Value)
	if err != nil {
		return err
	}
	s.emails.Record(r.Partition, r.Offset, e.EmailID, e.Status == schemas.EmailQueued, e.SentAt)
	return nil
}

// fold decodes the records of topic t and adds each to the figures; the
// debug line names the event by id.
func fold[V any](cat *schemas.Catalog, t schemas.Topic[V], log *slog.Logger, msg string, add func(*Stats, *V), id func(*V) slog.Attr) func(context.Context, *Stats, *kgo.Record) error {
	codec := t.Codec(cat)
	return func(ctx context.Context, st *Stats, r *kgo.Record) error {
		v, err := codec.Decode(ctx, r.Value)
		if err != nil {
			return err
		}
		add(st, v)
		log.LogAttrs(ctx, slog.LevelDebug, msg, slog.String("topic", r.Topic), slog.Int("partition", int(r.Partition)),
			slog.Int64("offset", r.Offset), id(v))
		return nil
	}
}

// OtherErrorClass counts the dead letters whose class is none of the shop's.
const OtherErrorClass = "other"

// deadLetter counts the dead letters of a queue by error class: from the
// DeadLetter value, or from its header if the value does not decode.
func (s *Service) deadLetter(codec *schemas.Codec[schemas.DeadLetter]) func(context.Context, *Stats, *kgo.Record) error {
	return func(ctx context.Context, st *Stats, r *kgo.Record) error {
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
		st.addDeadLetter(r.Topic, class, r.Timestamp)
		s.log.Debug("dead letter counted", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
			"key", string(r.Key), "error_class", class)
		return nil
	}
}

// housekeeping drops old rate buckets every few seconds. (The position is
// published to the group by the group's own commits, for lag tools.)
func (s *Service) housekeeping(ctx context.Context) error {
	return loop.Every(ctx, 5*time.Second, func(now time.Time) {
		for _, o := range s.figures.Owned() {
			o.State.forget(now)
		}
	})
}
