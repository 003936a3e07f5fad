// Package email is the email service: it sends one confirmation email per
// order on order-created, records it on email-sent, exactly once, and shows
// the committed emails on /emails.
package email

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
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
	log *slog.Logger
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
	if err != nil {
		return nil, err
	}
	s.log = s.Logger()
	return s, nil
}

// Transform is the email step alone, as the service runs it inside each
// transaction: for benchmarks and tools that drive an engine of their own.
func Transform(cat *schemas.Catalog, log *slog.Logger) txn.Handler {
	s := &Service{cat: cat, log: log}
	return s.sendConfirmation
}

func (s *Service) Name() string { return "email" }

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
// email. The email is recorded on email-sent in the same transaction that
// consumes the order; handing it to a mail server is out of scope.
func (s *Service) sendConfirmation(ctx context.Context, in *kgo.Record) ([]*kgo.Record, error) {
	o, err := s.cat.Orders.Decode(ctx, in.Value)
	if err != nil {
		return nil, err
	}
	emailID := schemas.EmailID(o.OrderID)
	// Typed attributes: no value is boxed, and nothing is built when
	// the level is off.
	s.log.LogAttrs(ctx, slog.LevelInfo, "order received",
		slog.String("topic", in.Topic), slog.Int("partition", int(in.Partition)), slog.Int64("offset", in.Offset),
		slog.String("order_id", o.OrderID), slog.String("email_id", emailID), slog.Int64("user_id", o.UserID))
	to, subject := Confirmation(o)
	e := schemas.EmailSent{
		EmailID: emailID,
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
