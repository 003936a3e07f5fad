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
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/serve"
	"github.com/blackfriday-kafka/shop/services/stage"
	"github.com/blackfriday-kafka/shop/txn"
)

// keepEmails is how many of the latest emails /emails can show.
const keepEmails = 1000

// Service is the email service.
type Service struct {
	*stage.Service[schemas.EmailSent]
}

// New connects the email service.
func New(cfg config.Config, cat *schemas.Catalog) (*Service, error) {
	log := cfg.Log().With("service", "email", "instance", cfg.InstanceID)
	s, err := stage.NewService(cfg, cat, stage.Spec{
		Service: "email",
		Input:   schemas.Orders.Spec,
		DLQ:     schemas.OrderDLQ,
		Writes:  []*schemas.Spec{schemas.Emails.Spec},
		Handler: Transform(cat, log),
		Outputs: "emails_sent",
	}, schemas.Emails, keepEmails, schemas.EmailViewCheckpoints)
	return &Service{s}, err
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
	count, emails := s.Outputs.Newest(limit)
	serve.JSON(w, http.StatusOK, map[string]any{"count": count, "emails_sent": emails})
}
