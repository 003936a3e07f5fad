// Package email is the email service: one confirmation email per order on
// order-created, committed on email-sent exactly once (the outbox), then
// delivered over SMTP by a loop of its own after the commit, at least once
// with one Message-ID per email (the boundary no Kafka transaction covers);
// /emails shows the committed emails with their delivery state.
package email

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/serve"
	"github.com/blackfriday-kafka/shop/txn"
	"github.com/blackfriday-kafka/shop/txn/metrics"
	"github.com/blackfriday-kafka/shop/txn/stage"
	"github.com/blackfriday-kafka/shop/txn/view"
)

// keepEmails is how many of the latest emails /emails can show.
const keepEmails = 1000

// Service is the email service: the exactly-once stage, the view of its
// emails and their deliveries, and the delivery loop.
type Service struct {
	*stage.Stage
	cat     *schemas.Catalog
	emails  *Deliveries
	follow  *view.Follower
	kafka   prometheus.Collector // the view's client metrics
	courier *Courier             // nil without an SMTP address: the outbox only
}

// New connects the email service. It delivers to cfg.SMTPAddr; a Config
// without one (a test's) commits the outbox and delivers nothing.
func New(cfg config.Config, cat *schemas.Catalog) (*Service, error) {
	log := cfg.Log().With("service", "email", "instance", cfg.InstanceID)
	st, err := stage.New(cfg.Stage(), cat, stage.Spec{
		Service: "email",
		Input:   schemas.Orders.Spec,
		DLQ:     schemas.OrderDLQ,
		Writes:  []*schemas.Spec{schemas.Emails.Spec},
		Handler: Transform(cat, log),
		Outputs: "emails_sent",
	})
	if err != nil {
		return nil, err
	}
	connect := cfg.Connect() // the principal's credentials, in secure mode, as the stage's
	s := &Service{Stage: st, cat: cat, emails: NewDeliveries(schemas.Emails.Codec(cat), keepEmails, log)}
	kafka := metrics.Kafka("view")
	s.kafka = kafka
	if s.follow, err = view.Follow(cfg.Brokers, log, s.emails.Topics(), append(slices.Clone(connect), kgo.WithHooks(kafka))...); err != nil {
		return nil, err
	}
	if every := cfg.Checkpoints(); every > 0 {
		cps, err := view.OpenCheckpoints(cfg.Brokers, schemas.EmailViewCheckpoints.Name, cfg.InstanceID, connect...)
		if err != nil {
			return nil, err
		}
		s.follow.Checkpointed(s.emails, cps, every)
	}
	if cfg.SMTPAddr != "" {
		s.courier, err = NewCourier(CourierConfig{
			Brokers: cfg.Brokers, Connect: connect, InstanceID: cfg.InstanceID, Catalog: cat, Logger: log,
			SMTP:       SMTP{Addr: cfg.SMTPAddr, Auth: cfg.SMTPAuth, PlainAuth: cfg.SMTPPlainAuth},
			StallAfter: cfg.StallAfter,
		})
		if err != nil {
			return nil, err
		}
	} else {
		log.Warn("no SMTP address: emails are committed on the outbox and not delivered")
	}
	return s, nil
}

func (s *Service) Name() string { return "email" }

// Run runs the stage, the view and the delivery loop until ctx is
// cancelled.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Stage.Run(ctx) })
	g.Go(func() error {
		if err := s.cat.Await(ctx, s.Logger(), schemas.Emails.Spec); err != nil {
			return nil
		}
		return s.follow.Run(ctx, s.emails.Apply)
	})
	if s.courier != nil {
		g.Go(func() error { return s.courier.Run(ctx) })
	}
	return g.Wait()
}

// Ready is nil once the stage is ready, the view shows everything
// committed when it started, and the delivery loop reached the cluster.
// The mail server is not asked: while it is down, the stage goes on and
// the emails wait, queued.
func (s *Service) Ready(ctx context.Context) error {
	if err := s.Stage.Ready(ctx); err != nil {
		return err
	}
	if !s.follow.CaughtUp() {
		return errors.New("still reading the committed emails")
	}
	if s.courier != nil && !s.courier.Ready() {
		return errors.New("the delivery loop has not reached the cluster yet")
	}
	return nil
}

// Healthy is nil unless the stage is stalled or deliveries have failed for
// longer than STALL_AFTER.
func (s *Service) Healthy() error {
	if err := s.Stage.Healthy(); err != nil {
		return err
	}
	if s.courier != nil {
		return s.courier.Healthy()
	}
	return nil
}

// Collectors are the stage's metrics, the delivery loop's and the
// undelivered queue.
func (s *Service) Collectors() []prometheus.Collector {
	cs := append(s.Stage.Collectors(), s.kafka,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_email_undelivered",
			Help: "Committed emails the mail server has neither taken nor refused yet (queued on /emails).",
		}, func() float64 { return float64(s.emails.Pending()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_email_oldest_undelivered_age_seconds",
			Help: "How long the oldest undelivered email has waited since its commit; 0 when none waits.",
		}, func() float64 {
			if u := s.emails.Undelivered(); u.Oldest != nil {
				return time.Since(*u.Oldest).Seconds()
			}
			return 0
		}),
	)
	if s.courier != nil {
		cs = append(cs, s.courier.Collectors()...)
	}
	return cs
}

// emailStep is the business step and what it needs.
type emailStep struct {
	orders *schemas.Codec[schemas.OrderCreated]
	emails *schemas.Codec[schemas.EmailSent]
	log    *slog.Logger
}

// Transform is the email step alone, as the service runs it inside each
// transaction: for benchmarks and tools that drive an engine of their own.
func Transform(cat *schemas.Catalog, log *slog.Logger) txn.Handler {
	s := &emailStep{orders: schemas.Orders.Codec(cat), emails: schemas.Emails.Codec(cat), log: log}
	return s.sendConfirmation
}

// Confirmation is the email of an order: to whom, and its subject line,
// such as "user_42@example.com" and "Order 406a…cdc8 confirmed: 1999.00 EUR".
// Built by appending into one buffer: it runs for every order.
func Confirmation(o *schemas.OrderCreated) (to, subject string) {
	var buf [128]byte
	b := strconv.AppendInt(append(buf[:0], "user_"...), o.UserID, 10)
	to = string(append(b, "@example.com"...))
	b = append(append(append(buf[:0], "Order "...), o.OrderID...), " confirmed: "...)
	subject = string(append(schemas.Euros(o.TotalCents).Append(b), " EUR"...))
	return to, subject
}

// sendConfirmation is the business step: an order gets its confirmation
// email, committed on email-sent (the outbox) in the same transaction that
// consumes the order, queued: the delivery loop sends it once it committed.
// QueuedEmail is the confirmation email of order o, queued at at for the
// delivery loop: what the email step commits on email-sent.
func QueuedEmail(o *schemas.OrderCreated, at time.Time) schemas.EmailSent {
	to, subject := Confirmation(o)
	return schemas.EmailSent{
		EmailID: schemas.EmailID(o.OrderID),
		OrderID: o.OrderID,
		UserID:  o.UserID,
		To:      to,
		Subject: subject,
		Status:  schemas.EmailQueued,
		SentAt:  at,
		// What the message body says.
		Items:      o.Items,
		TotalCents: o.TotalCents,
	}
}

func (s *emailStep) sendConfirmation(ctx context.Context, in *kgo.Record) ([]*kgo.Record, error) {
	o, err := s.orders.Decode(ctx, in.Value)
	if err != nil {
		return nil, err
	}
	emailID := schemas.EmailID(o.OrderID)
	// Typed attributes: no value is boxed, and nothing is built when
	// the level is off.
	s.log.LogAttrs(ctx, slog.LevelInfo, "order received",
		slog.String("topic", in.Topic), slog.Int("partition", int(in.Partition)), slog.Int64("offset", in.Offset),
		slog.String("order_id", o.OrderID), slog.String("email_id", emailID), slog.Int64("user_id", o.UserID))
	e := QueuedEmail(o, time.Now().UTC().Truncate(time.Millisecond))
	rec, err := s.emails.Record(&e)
	if err != nil {
		return nil, err
	}
	return []*kgo.Record{rec}, nil
}

func (s *Service) Routes(r *mux.Router) {
	r.HandleFunc("/emails", s.list).Methods(http.MethodGet)
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) {
	limit, ok := serve.Limit(w, r)
	if !ok {
		return
	}
	count, emails := s.emails.Newest(limit)
	serve.JSON(w, http.StatusOK, map[string]any{"count": count, "emails_sent": emails, "delivery": s.emails.Undelivered()})
}
