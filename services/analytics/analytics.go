// Package analytics is the analytics service: it folds every committed event
// of the shop (payments, orders, emails, dead letters) into live figures on
// /analytics and /analytics/live, and shows them with the consumer groups on a
// live dashboard at /.
package analytics

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/platform"
)

// Service is the analytics service.
//
// It rebuilds its figures from the beginning of the log at every start, so
// they stay exact across restarts without a store of their own. It still
// commits its position to analytics-service-group, so that lag tools show
// how far behind it is.
type Service struct {
	cat    *schemas.Catalog
	log    *slog.Logger
	follow *platform.Follower
	stats  *Stats
	groups *platform.GroupWatch // the consumer groups, for the dashboard
	kafka  prometheus.Collector // the follower's client metrics

	mu       sync.Mutex
	position kadm.Offsets // next offset to read, per partition
}

// New connects the analytics service.
func New(cfg platform.Config, cat *schemas.Catalog) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{
		cat:      cat,
		log:      cfg.Logger.With("service", "analytics", "instance", cfg.InstanceID),
		stats:    newStats(),
		position: make(kadm.Offsets),
	}
	kafka := platform.KafkaMetrics("follower")
	s.kafka = kafka
	var err error
	s.follow, err = platform.NewFollower(cfg.Brokers, s.log, schemas.Topics, kgo.WithHooks(kafka))
	if err != nil {
		return nil, err
	}
	s.groups = platform.NewGroupWatch(kadm.NewClient(s.follow.Client()), groupsEvery, s.log, DashboardGroups...)
	return s, nil
}

func (s *Service) Name() string { return "analytics" }

func (s *Service) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		platform.CountsByLabel("shop_analytics_events_total", "Committed events folded into the figures, by topic.",
			"topic", nil, schemas.Topics, s.stats.topicCounts),
		platform.CountsByLabel("shop_analytics_dead_letters_total", "Dead letters on dlq-payment and dlq-order, by error_class.",
			"error_class", nil, platform.ErrorClasses, s.stats.deadLetterCounts),
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
		platform.WriteJSON(w, http.StatusOK, s.stats.report(time.Now()))
	}).Methods(http.MethodGet)
	r.HandleFunc("/analytics/live", func(w http.ResponseWriter, _ *http.Request) {
		platform.WriteJSON(w, http.StatusOK, s.stats.live(time.Now()))
	}).Methods(http.MethodGet)
	s.dashboardRoutes(r)
}

// Run follows the log until ctx is cancelled.
func (s *Service) Run(ctx context.Context) error {
	return platform.RunAll(ctx,
		func(ctx context.Context) error { return s.follow.Run(ctx, s.apply) },
		s.housekeeping,
		s.groups.Run,
	)
}

func (s *Service) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.follow.Client().Ping(ctx)
}

// apply folds committed records into the figures.
func (s *Service) apply(recs []*kgo.Record) {
	ctx := context.Background()
	for _, r := range recs {
		s.fold(ctx, r)
	}
	s.mu.Lock()
	for _, r := range recs {
		s.position.AddOffset(r.Topic, r.Partition, r.Offset+1, r.LeaderEpoch)
	}
	s.mu.Unlock()
}

func (s *Service) fold(ctx context.Context, r *kgo.Record) {
	var err error
	switch r.Topic {
	case schemas.TopicPayments:
		var p *schemas.PaymentSucceeded
		if p, err = s.cat.Payments.Decode(ctx, r.Value); err == nil {
			if fe := schemas.ValidatePayment(p); fe != nil {
				return // refused by the order service; counted as a dead letter
			}
			s.stats.addPayment(p)
			s.log.Debug("payment counted", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
				"payment_id", p.PaymentID, "user_id", p.UserID)
		}
	case schemas.TopicOrders:
		var o *schemas.OrderCreated
		if o, err = s.cat.Orders.Decode(ctx, r.Value); err == nil {
			s.stats.addOrder(o)
			s.log.Debug("order counted", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
				"order_id", o.OrderID, "user_id", o.UserID)
		}
	case schemas.TopicEmails:
		var e *schemas.EmailSent
		if e, err = s.cat.Emails.Decode(ctx, r.Value); err == nil {
			s.stats.addEmail(e)
			s.log.Debug("email counted", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
				"email_id", e.EmailID, "user_id", e.UserID)
		}
	case schemas.TopicPaymentDLQ, schemas.TopicOrderDLQ:
		class := headerValue(r, schemas.HeaderErrorClass)
		if dl, derr := s.cat.PaymentDLQ.Decode(ctx, r.Value); derr == nil {
			class = dl.ErrorClass
		}
		s.stats.addDeadLetter(r.Topic, class, r.Timestamp)
		s.log.Debug("dead letter counted", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
			"key", string(r.Key), "error_class", class)
	}
	if err != nil {
		// Poison on an input topic: the service that consumes it sends
		// it to a dead letter queue, where it is counted.
		s.log.Debug("skipping unreadable record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
			"key", string(r.Key), "err", err)
	}
}

func headerValue(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// housekeeping drops old rate buckets and publishes the position to the
// group every few seconds.
func (s *Service) housekeeping(ctx context.Context) error {
	adm := kadm.NewClient(s.follow.Client())
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			s.stats.forget(now)
			s.mu.Lock()
			pos := make(kadm.Offsets)
			s.position.Each(func(o kadm.Offset) { pos.Add(o) })
			s.mu.Unlock()
			if len(pos) == 0 {
				continue
			}
			if _, err := adm.CommitOffsets(ctx, platform.Group("analytics"), pos); err != nil && ctx.Err() == nil {
				s.log.Debug("publishing position to the group failed", "err", err)
			}
		}
	}
}
