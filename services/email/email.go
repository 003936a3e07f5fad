// Package email is the email service: it sends one confirmation email per
// order on order-created, records it on email-sent, exactly once, and shows
// the committed emails on /emails.
package email

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/platform"
	"github.com/blackfriday-kafka/shop/txn"
)

// keep is how many recent emails /emails can show.
const keep = 1000

// Service is the email service.
type Service struct {
	cat    *schemas.Catalog
	log    *slog.Logger
	engine *txn.Engine
	view   *platform.Follower
	emails *platform.Recent[schemas.EmailSent]
}

// New connects the email service. tuning sets the transaction batching; its
// zero value takes the engine's defaults.
func New(cfg platform.Config, cat *schemas.Catalog, tuning txn.Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{
		cat:    cat,
		log:    cfg.Logger.With("service", "email", "instance", cfg.InstanceID),
		emails: platform.NewRecent[schemas.EmailSent](keep),
	}
	var err error
	s.engine, err = platform.NewEngine(cfg, platform.Stage{
		Service: "email",
		Input:   cat.Orders.Topic(),
		DLQ:     cat.OrderDLQ,
		Handler: s.sendConfirmation,
		Tuning:  tuning,
	})
	if err != nil {
		return nil, err
	}
	s.view, err = platform.NewFollower(cfg.Brokers, s.log, cat.Emails.Topic())
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Confirmation is the email of an order: to whom, and its subject line.
func Confirmation(o *schemas.OrderCreated) (to, subject string) {
	return fmt.Sprintf("user_%d@example.com", o.UserID),
		fmt.Sprintf("Order %s confirmed: %s EUR", o.OrderID, schemas.Euros(o.TotalCents))
}

// sendConfirmation is the business step: an order gets its confirmation
// email. The email is recorded on email-sent in the same transaction that
// consumes the order; delivering it to a mail server is out of scope.
func (s *Service) sendConfirmation(ctx context.Context, in *kgo.Record) ([]*kgo.Record, error) {
	o, err := s.cat.Orders.Decode(ctx, in.Value)
	if err != nil {
		return nil, err
	}
	to, subject := Confirmation(o)
	e := schemas.EmailSent{
		EmailID: schemas.EmailID(o.OrderID),
		OrderID: o.OrderID,
		UserID:  o.UserID,
		To:      to,
		Subject: subject,
		Status:  schemas.EmailDelivered,
		SentAt:  time.Now().UTC().Truncate(time.Millisecond),
	}
	s.log.Info("order received", "topic", in.Topic, "partition", in.Partition, "offset", in.Offset,
		"order_id", o.OrderID, "user_id", o.UserID)
	rec, err := s.cat.Emails.Record(in.Key, &e)
	if err != nil {
		return nil, err
	}
	return []*kgo.Record{rec}, nil
}

func (s *Service) Name() string { return "email" }

func (s *Service) Collectors() []prometheus.Collector {
	return platform.EngineCollectors(s.engine, "email")
}

func (s *Service) Routes(r *mux.Router) {
	r.HandleFunc("/emails", s.list).Methods(http.MethodGet)
}

// Run runs the transactional pipeline and the view until ctx is cancelled.
func (s *Service) Run(ctx context.Context) error {
	return platform.RunAll(ctx,
		s.engine.Run,
		func(ctx context.Context) error { return s.view.Run(ctx, s.apply) },
	)
}

// apply adds committed emails to the view.
func (s *Service) apply(recs []*kgo.Record) {
	for _, r := range recs {
		e, err := s.cat.Emails.Decode(context.Background(), r.Value)
		if err != nil {
			s.log.Warn("unreadable email on the log", "partition", r.Partition, "offset", r.Offset, "err", err)
			continue
		}
		s.emails.Add(*e)
	}
}

func (s *Service) Ready(context.Context) error {
	if !s.engine.Ready() {
		return errors.New("not connected to the cluster yet")
	}
	return nil
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) {
	limit, err := platform.Limit(r)
	if err != nil {
		platform.WriteJSON(w, http.StatusBadRequest, map[string]string{"status": "error", "error": err.Error(), "field": "limit"})
		return
	}
	count, emails := s.emails.Newest(limit)
	platform.WriteJSON(w, http.StatusOK, map[string]any{"count": count, "emails_sent": emails})
}
