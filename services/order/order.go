// Package order is the order service: it turns each payment on
// payment-successful into one order on order-created, exactly once, and
// shows the committed orders on /orders.
package order

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/gorilla/mux"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/serve"
	"github.com/blackfriday-kafka/shop/txn"
	"github.com/blackfriday-kafka/shop/txn/loop"
	"github.com/blackfriday-kafka/shop/txn/stage"
	"github.com/blackfriday-kafka/shop/txn/store"
)

// keepOrders is how many of the latest orders /orders can show.
const keepOrders = 1000

// Service is the order service.
type Service struct {
	*stage.Service[schemas.OrderCreated]
	ordered *ordered // nil in at-least-once mode
}

// New connects the order service.
func New(cfg config.Config, cat *schemas.Catalog) (*Service, error) {
	log := cfg.Log().With("service", "order", "instance", cfg.InstanceID)
	step := newStep(cat, cfg.ProcessingDelay, log)
	spec := stage.Spec{
		Service: "order",
		Input:   schemas.Payments.Spec,
		DLQ:     schemas.PaymentDLQ,
		Writes:  []*schemas.Spec{schemas.Orders.Spec, schemas.Duplicates.Spec},
		Handler: step.createOrder,
		Outputs: "orders_created",
	}
	if cfg.OrderKillAt != "" && !slices.Contains(KillPoints, KillPoint(cfg.OrderKillAt)) {
		return nil, fmt.Errorf("ORDER_KILL_AT=%q: want one of %v (for the kill tests only)", cfg.OrderKillAt, KillPoints)
	}
	if !cfg.AtLeastOnce {
		db, err := store.Open(cfg.StateDirOf("order"), store.Options{CacheBytes: cfg.StateCache(), Log: log})
		if err != nil {
			return nil, fmt.Errorf("the store of the payments ordered: %w", err)
		}
		step.ordered = newOrdered(cfg.Brokers, schemas.Group("order"), step.orders, cfg.Window(), db, KillPoint(cfg.OrderKillAt), log, cfg.Connect()...)
		spec.Store = step.ordered
	}
	s, err := stage.NewService(cfg.Stage(), cat, spec, schemas.Orders, keepOrders, schemas.OrderViewCheckpoints)
	if err != nil && step.ordered != nil {
		err = errors.Join(err, step.ordered.Close())
	}
	return &Service{Service: s, ordered: step.ordered}, err
}

// Run runs the stage and its view, and removes the payments ordered before
// the window from the store; once they stop, it closes the store.
func (s *Service) Run(ctx context.Context) error {
	if s.ordered == nil {
		return s.Service.Run(ctx)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Service.Run(gctx) })
	g.Go(func() error {
		return loop.Every(gctx, expireEvery, func(now time.Time) { s.ordered.expire(gctx, now) })
	})
	err := g.Wait()
	return errors.Join(err, s.ordered.Close())
}

// orderStep is the business step and what it needs.
type orderStep struct {
	payments   *schemas.Codec[schemas.PaymentSucceeded]
	orders     *schemas.Codec[schemas.OrderCreated]
	duplicates *schemas.Codec[schemas.PaymentDuplicate]
	ordered    *ordered // the payments already ordered; nil: none are dropped
	delay      time.Duration
	log        *slog.Logger
}

func newStep(cat *schemas.Catalog, delay time.Duration, log *slog.Logger) *orderStep {
	return &orderStep{payments: schemas.Payments.Codec(cat), orders: schemas.Orders.Codec(cat),
		duplicates: schemas.Duplicates.Codec(cat), delay: delay, log: log}
}

// Transform is the order step alone, as the service runs it inside each
// transaction, without its memory of past payments: for benchmarks and
// tools that drive an engine of their own.
func Transform(cat *schemas.Catalog, delay time.Duration, log *slog.Logger) txn.Handler {
	return newStep(cat, delay, log).createOrder
}

func (s *Service) Name() string { return "order" }

// FromPayment is the order of payment p, created at at: what the order
// step commits on order-created.
func FromPayment(p *schemas.PaymentSucceeded, at time.Time) schemas.OrderCreated {
	o := schemas.OrderCreated{
		OrderID:    schemas.OrderID(p.PaymentID),
		PaymentID:  p.PaymentID,
		UserID:     p.UserID,
		Items:      make([]schemas.OrderItem, len(p.Cart)),
		TotalCents: p.TotalCents,
		Status:     schemas.OrderConfirmed,
		CreatedAt:  at,
	}
	for i, it := range p.Cart {
		o.Items[i] = schemas.OrderItem(it)
	}
	return o
}

// createOrder is the business step: a valid payment becomes an order. An
// invalid or unreadable payment is poison and goes to dlq-payment.
func (s *orderStep) createOrder(ctx context.Context, in *kgo.Record) ([]*kgo.Record, error) {
	p, err := s.payments.Decode(ctx, in.Value)
	if err != nil {
		return nil, err
	}
	if fe := schemas.ValidatePayment(p); fe != nil {
		return nil, &schemas.RecordError{Class: schemas.Validation, Err: fe}
	}
	id, remember := s.ordered.key(p.PaymentID)
	if remember {
		orderOffset, dup, err := s.ordered.seen(in.Partition, id)
		if err != nil {
			return nil, err
		}
		if dup {
			return s.dropDuplicate(ctx, in, p, orderOffset)
		}
	}
	orderID := schemas.OrderID(p.PaymentID)
	// Typed attributes: no value is boxed, and nothing is built when
	// the level is off.
	s.log.LogAttrs(ctx, slog.LevelInfo, "payment received",
		slog.String("topic", in.Topic), slog.Int("partition", int(in.Partition)), slog.Int64("offset", in.Offset),
		slog.String("payment_id", p.PaymentID), slog.String("order_id", orderID), slog.Int64("user_id", p.UserID))
	if s.delay > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(s.delay):
		}
	}
	o := FromPayment(p, time.Now().UTC().Truncate(time.Millisecond))
	rec, err := s.orders.Record(&o)
	if err != nil {
		return nil, err
	}
	if remember {
		if err := s.ordered.add(in.Partition, id, rec, o.CreatedAt); err != nil {
			return nil, err
		}
	}
	return []*kgo.Record{rec}, nil
}

// dropDuplicate makes no second order of a payment already ordered: it
// records the duplicate instead, in the same transaction, so that
// analytics counts the payment once.
func (s *orderStep) dropDuplicate(ctx context.Context, in *kgo.Record, p *schemas.PaymentSucceeded, orderOffset int64) ([]*kgo.Record, error) {
	s.log.LogAttrs(ctx, slog.LevelWarn, "duplicate payment dropped: already ordered",
		slog.String("topic", in.Topic), slog.Int("partition", int(in.Partition)), slog.Int64("offset", in.Offset),
		slog.Int64("order_offset", orderOffset), slog.String("payment_id", p.PaymentID), slog.Int64("user_id", p.UserID))
	rec, err := s.duplicates.Record(&schemas.PaymentDuplicate{
		PaymentID: p.PaymentID, UserID: p.UserID, TotalCents: p.TotalCents,
		SourcePartition: in.Partition, SourceOffset: in.Offset, OrderOffset: orderOffset,
		DroppedAt: time.Now().UTC().Truncate(time.Millisecond),
	})
	if err != nil {
		return nil, err
	}
	return []*kgo.Record{rec}, nil
}

func (s *Service) Routes(r *mux.Router) {
	r.HandleFunc("/orders", s.list).Methods(http.MethodGet)
}

// OrderView is an order as /orders shows it: money in euros.
type OrderView struct {
	OrderID   string        `json:"order_id"`
	PaymentID string        `json:"payment_id"`
	UserID    int64         `json:"user_id"`
	Items     []ItemView    `json:"items"`
	Total     schemas.Euros `json:"total"`
	Status    string        `json:"status"`
	CreatedAt time.Time     `json:"created_at"`
}

// ItemView is an order line with its price in euros.
type ItemView struct {
	Name     string        `json:"name"`
	Price    schemas.Euros `json:"price"`
	Quantity int32         `json:"quantity"`
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) {
	limit, ok := serve.Limit(w, r)
	if !ok {
		return
	}
	count, orders := s.Outputs.Newest(limit)
	views := make([]OrderView, len(orders))
	for i, o := range orders {
		v := OrderView{OrderID: o.OrderID, PaymentID: o.PaymentID, UserID: o.UserID,
			Total: schemas.Euros(o.TotalCents), Status: o.Status, CreatedAt: o.CreatedAt}
		for _, it := range o.Items {
			v.Items = append(v.Items, ItemView{it.Name, schemas.Euros(it.UnitPriceCents), it.Quantity})
		}
		views[i] = v
	}
	serve.JSON(w, http.StatusOK, map[string]any{"count": count, "orders": views})
}
