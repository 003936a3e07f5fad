package order_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/infra/registry"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/order"
)

// BenchmarkTransform is the order step on one payment record: decode,
// validate, log, build the order, encode it. Logs go to io.Discard, in the
// services' JSON format; log=warn is the step with the info line filtered.
//
//	go test -run '^$' -bench . -benchmem ./services/order/
func BenchmarkTransform(b *testing.B) {
	srv := httptest.NewServer(registry.New().Handler())
	b.Cleanup(srv.Close)
	if err := infra.RegisterSchemas(context.Background(), srv.URL); err != nil {
		b.Fatal(err)
	}
	cat, err := schemas.Connect(context.Background(), srv.URL)
	if err != nil {
		b.Fatal(err)
	}
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
	in, err := schemas.Payments.Codec(cat).Record(&p)
	if err != nil {
		b.Fatal(err)
	}
	in.Partition, in.Offset = 1, 12345
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
		b.Run("log="+level.String(), func(b *testing.B) {
			log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: level}))
			h := order.Transform(cat, 0, log)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				out, err := h(ctx, in)
				if err != nil || len(out) != 1 {
					b.Fatal(out, err)
				}
			}
		})
	}
}
