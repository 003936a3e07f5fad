// Package order is the order service: it turns each payment on
// payment-successful into one order on order-created, exactly once, and
// shows the committed orders on /orders.
package order

import (
	"context"
	"errors"
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

// keep is how many recent orders /orders can show.
const keep = 1000

// Service is the order service.
type Service struct {
	cat    *schemas.Catalog
	delay  time.Duration
	log    *slog.Logger
	engine *txn.Engine
	view   *platform.Follower
	orders *platform.Recent[schemas.OrderCreated]
}

// New connects the order service. tuning sets the transaction batching; its
// zero value takes the engine's defaults.
func New(cfg platform.Config, cat *schemas.Catalog, tuning txn.Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{
		cat:    cat,
		delay:  cfg.ProcessingDelay,
		log:    cfg.Logger.With("service", "order", "instance", cfg.InstanceID),
		orders: platform.NewRecent[schemas.OrderCreated](keep),
	}
	var err error
	s.engine, err = platform.NewEngine(cfg, platform.Stage{
		Service: "order",
		Input:   cat.Payments.Topic(),
		DLQ:     cat.PaymentDLQ,
		Handler: s.createOrder,
		Tuning:  tuning,
	})
	if err != nil {
		return nil, err
	}
	s.view, err = platform.NewFollower(cfg.Brokers, s.log, cat.Orders.Topic())
	if err != nil {
		return nil, err
	}
	return s, nil
}

// createOrder is the business step: a valid payment becomes an order. An
// invalid or unreadable payment is poison and goes to dlq-payment.
func (s *Service) createOrder(ctx context.Context, in *kgo.Record) ([]*kgo.Record, error) {
	p, err := s.cat.Payments.Decode(ctx, in.Value)
	if err != nil {
		return nil, err
	}
	if fe := schemas.ValidatePayment(p); fe != nil {
		return nil, &schemas.RecordError{Class: schemas.Validation, Err: fe}
	}
	s.log.Info("payment received", "topic", in.Topic, "partition", in.Partition, "offset", in.Offset,
		"payment_id", p.PaymentID, "user_id", p.UserID)
	if s.delay > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(s.delay):
		}
	}
	o := schemas.OrderCreated{
		OrderID:    schemas.OrderID(p.PaymentID),
		PaymentID:  p.PaymentID,
		UserID:     p.UserID,
		Items:      make([]schemas.OrderItem, len(p.Cart)),
		TotalCents: p.TotalCents,
		Status:     schemas.OrderConfirmed,
		CreatedAt:  time.Now().UTC().Truncate(time.Millisecond),
	}
	for i, it := range p.Cart {
		o.Items[i] = schemas.OrderItem(it)
	}
	rec, err := s.cat.Orders.Record(in.Key, &o)
	if err != nil {
		return nil, err
	}
	return []*kgo.Record{rec}, nil
}

func (s *Service) Name() string { return "order" }

func (s *Service) Collectors() []prometheus.Collector {
	return platform.EngineCollectors(s.engine, "order")
}

func (s *Service) Routes(r *mux.Router) {
	r.HandleFunc("/orders", s.list).Methods(http.MethodGet)
}

// Run runs the transactional pipeline and the view until ctx is cancelled.
func (s *Service) Run(ctx context.Context) error {
	return platform.RunAll(ctx,
		s.engine.Run,
		func(ctx context.Context) error { return s.view.Run(ctx, s.apply) },
	)
}

// apply adds committed orders to the view.
func (s *Service) apply(recs []*kgo.Record) {
	for _, r := range recs {
		o, err := s.cat.Orders.Decode(context.Background(), r.Value)
		if err != nil {
			s.log.Warn("unreadable order on the log", "partition", r.Partition, "offset", r.Offset, "err", err)
			continue
		}
		s.orders.Add(*o)
	}
}

func (s *Service) Ready(ctx context.Context) error {
	if !s.engine.Ready() {
		return errors.New("not connected to the cluster yet")
	}
	return nil
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
	limit, err := platform.Limit(r)
	if err != nil {
		platform.WriteJSON(w, http.StatusBadRequest, map[string]string{"status": "error", "error": err.Error(), "field": "limit"})
		return
	}
	count, orders := s.orders.Newest(limit)
	views := make([]OrderView, len(orders))
	for i, o := range orders {
		v := OrderView{OrderID: o.OrderID, PaymentID: o.PaymentID, UserID: o.UserID,
			Total: schemas.Euros(o.TotalCents), Status: o.Status, CreatedAt: o.CreatedAt}
		for _, it := range o.Items {
			v.Items = append(v.Items, ItemView{it.Name, schemas.Euros(it.UnitPriceCents), it.Quantity})
		}
		views[i] = v
	}
	platform.WriteJSON(w, http.StatusOK, map[string]any{"count": count, "orders": views})
}
