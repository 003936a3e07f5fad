package email_test

import (
	"testing"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/schemas/schemastest"
	"github.com/blackfriday-kafka/shop/services/email"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// BenchmarkTransform is the email step on one order record: decode, log,
// build the email, encode it. Logs go to io.Discard, in the
// services' JSON format; log=warn is the step with the info line filtered.
//
//	go test -run '^$' -bench . -benchmem ./services/email/
func BenchmarkTransform(b *testing.B) {
	o := schemastest.Order(schemastest.Payment())
	shoptest.BenchTransform(b, schemas.Orders, &o, email.Transform)
}
