// Package schemastest gives tests and benchmarks the shop's schemas
// without a cluster: an in-process schema registry, a catalog resolved on
// it, and a typical payment with its order.
package schemastest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/infra/registry"
	"github.com/blackfriday-kafka/shop/schemas"
)

// Registry is a client of an empty in-process schema registry, its state
// on a one-broker in-memory Kafka cluster of its own; both stop when the
// test ends.
func Registry(t testing.TB) *sr.Client {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := registry.Open(ctx, registry.Config{Brokers: cluster.ListenAddrs(), Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		err = r.WaitReady(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(func() { srv.Close(); r.Close() })
	reg, err := schemas.NewRegistryClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// Catalog is a catalog on a new Registry: every schema of the build
// registered, as make schemas does, and resolved. Its Registry method is
// the registry's client.
func Catalog(t testing.TB) *schemas.Catalog {
	t.Helper()
	reg := Registry(t)
	ctx := context.Background()
	if err := schemas.RegisterAll(ctx, reg); err != nil {
		t.Fatal(err)
	}
	cat, err := schemas.Resolved(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// Payment is a typical Black Friday payment: three cart lines.
func Payment() schemas.PaymentSucceeded {
	p := schemas.PaymentSucceeded{
		PaymentID: "5f0c1d7e-3b7a-4a51-9f51-6a1c3c1f2b10",
		UserID:    42,
		Cart: []schemas.CartItem{
			{Name: "MacBook Pro 14", UnitPriceCents: 199900, Quantity: 1},
			{Name: "USB-C cable", UnitPriceCents: 1990, Quantity: 2},
			{Name: "Sleeve", UnitPriceCents: 3450, Quantity: 1},
		},
		PaidAt: time.Date(2026, 11, 27, 9, 30, 0, 123e6, time.UTC),
	}
	p.TotalCents = schemas.CartTotal(p.Cart)
	return p
}

// Order is p's order, as the order service makes it, created when p was
// paid.
func Order(p schemas.PaymentSucceeded) schemas.OrderCreated {
	o := schemas.OrderCreated{OrderID: schemas.OrderID(p.PaymentID), PaymentID: p.PaymentID, UserID: p.UserID,
		TotalCents: p.TotalCents, Status: schemas.OrderConfirmed, CreatedAt: p.PaidAt}
	for _, it := range p.Cart {
		o.Items = append(o.Items, schemas.OrderItem(it))
	}
	return o
}
