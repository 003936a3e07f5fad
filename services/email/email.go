// Package email is the email service: it sends one confirmation email per
// order on order-created, records it on email-sent, exactly once, and shows
// the committed emails on /emails.
package email

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/platform"
	"github.com/blackfriday-kafka/shop/txn"
)

// Service is the email service.
type Service struct {
	*platform.Pipeline[schemas.EmailSent]
	cat *schemas.Catalog
}

// New connects the email service. tuning sets the transaction batching; its
// zero value takes the engine's defaults.
func New(cfg platform.Config, cat *schemas.Catalog, tuning txn.Config) (*Service, error) {
	s := &Service{cat: cat}
	var err error
	s.Pipeline, err = platform.NewPipeline(cfg, platform.Stage{
		Service: "email",
		Input:   cat.Orders.Topic(),
		DLQ:     cat.OrderDLQ,
		Handler: s.sendConfirmation,
		Tuning:  tuning,
		Outputs: "emails_sent",
	}, cat.Emails)
	return s, err
}

func (s *Service) Name() string { return "email" }

// Confirmation is the email of an order: to whom, and its subject line.
func Confirmation(o *schemas.OrderCreated) (to, subject string) {
	return fmt.Sprintf("user_%d@example.com", o.UserID),
		fmt.Sprintf("Order %s confirmed: %s EUR", o.OrderID, schemas.Euros(o.TotalCents))
}

// sendConfirmation is the business step: an order gets its confirmation
// email. The email is recorded on email-sent in the same transaction that
// consumes the order; handing it to a mail server is out of scope.
func (s *Service) sendConfirmation(ctx context.Context, in *kgo.Record) ([]*kgo.Record, error) {
	o, err := s.cat.Orders.Decode(ctx, in.Value)
	if err != nil {
		return nil, err
	}
	s.Logger().Info("order received", "topic", in.Topic, "partition", in.Partition, "offset", in.Offset,
		"order_id", o.OrderID, "email_id", schemas.EmailID(o.OrderID), "user_id", o.UserID)
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
	rec, err := s.cat.Emails.Record(in.Key, &e)
	if err != nil {
		return nil, err
	}
	return []*kgo.Record{rec}, nil
}

func (s *Service) Routes(r *mux.Router) {
	r.HandleFunc("/emails", s.list).Methods(http.MethodGet)
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) {
	limit, err := platform.Limit(r)
	if err != nil {
		platform.WriteError(w, http.StatusBadRequest, err.Error(), "limit")
		return
	}
	count, emails := s.Newest(limit)
	platform.WriteJSON(w, http.StatusOK, map[string]any{"count": count, "emails_sent": emails})
}
