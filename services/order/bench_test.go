package order_test

import (
	"log/slog"
	"testing"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/schemas/schemastest"
	"github.com/blackfriday-kafka/shop/services/order"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
	"github.com/blackfriday-kafka/shop/txn"
)

// BenchmarkTransform is the order step on one payment record: decode,
// validate, log, build the order, encode it. Logs go to io.Discard, in the
// services' JSON format; log=warn is the step with the info line filtered.
//
//	go test -run '^$' -bench . -benchmem ./services/order/
func BenchmarkTransform(b *testing.B) {
	p := schemastest.Payment()
	shoptest.BenchTransform(b, schemas.Payments, &p, func(cat *schemas.Catalog, log *slog.Logger) txn.Handler {
		return order.Transform(cat, 0, log)
	})
}
