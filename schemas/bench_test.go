package schemas_test

import (
	"context"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/blackfriday-kafka/shop/infra/registry"
	"github.com/blackfriday-kafka/shop/schemas"
)

// The hot paths of every record: encode, decode, validate.
//
//	go test -run '^$' -bench . -benchmem ./schemas/

func benchCatalog(b *testing.B) *schemas.Catalog {
	b.Helper()
	srv := httptest.NewServer(registry.New().Handler())
	b.Cleanup(srv.Close)
	cl, err := schemas.NewRegistryClient(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	return registered(b, cl)
}

// benchPayment is a typical Black Friday payment: three cart lines.
func benchPayment() schemas.PaymentSucceeded {
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

func benchOrder(p schemas.PaymentSucceeded) schemas.OrderCreated {
	o := schemas.OrderCreated{OrderID: schemas.OrderID(p.PaymentID), PaymentID: p.PaymentID, UserID: p.UserID,
		TotalCents: p.TotalCents, Status: schemas.OrderConfirmed, CreatedAt: p.PaidAt}
	for _, it := range p.Cart {
		o.Items = append(o.Items, schemas.OrderItem(it))
	}
	return o
}

func BenchmarkEncodePayment(b *testing.B) {
	cat := benchCatalog(b)
	p := benchPayment()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := schemas.Payments.Codec(cat).Encode(&p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeOrder(b *testing.B) {
	cat := benchCatalog(b)
	o := benchOrder(benchPayment())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := schemas.Orders.Codec(cat).Record(&o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodePayment(b *testing.B) {
	cat := benchCatalog(b)
	p := benchPayment()
	value, err := schemas.Payments.Codec(cat).Encode(&p)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	for b.Loop() {
		if _, err := schemas.Payments.Codec(cat).Decode(ctx, value); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeOrder(b *testing.B) {
	cat := benchCatalog(b)
	o := benchOrder(benchPayment())
	value, err := schemas.Orders.Codec(cat).Encode(&o)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	for b.Loop() {
		if _, err := schemas.Orders.Codec(cat).Decode(ctx, value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeParallel is decoding from every core at once, as the
// services do with one engine and one view each.
func BenchmarkDecodeParallel(b *testing.B) {
	cat := benchCatalog(b)
	p := benchPayment()
	value, err := schemas.Payments.Codec(cat).Encode(&p)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := schemas.Payments.Codec(cat).Decode(ctx, value); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkValidatePayment(b *testing.B) {
	p := benchPayment()
	b.ReportAllocs()
	for b.Loop() {
		if fe := schemas.ValidatePayment(&p); fe != nil {
			b.Fatal(fe)
		}
	}
}

func BenchmarkOrderID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = schemas.OrderID("5f0c1d7e-3b7a-4a51-9f51-6a1c3c1f2b10")
	}
}

// Decoded strings point into a pooled reader's slab: decoding more records
// must never change values already returned.
func TestDecodedValuesSurviveLaterDecodes(t *testing.T) {
	srv := httptest.NewServer(registry.New().Handler())
	defer srv.Close()
	cl, err := schemas.NewRegistryClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	cat := registered(t, cl)
	ctx := context.Background()
	var want []schemas.PaymentSucceeded
	var got []*schemas.PaymentSucceeded
	for i := range 500 {
		p := benchPayment()
		p.PaymentID = schemas.OrderID(string(rune('a' + i%26)))
		p.Cart[0].Name = strings.Repeat(string(rune('A'+i%26)), 1+i%150)
		p.TotalCents = schemas.CartTotal(p.Cart)
		b, err := schemas.Payments.Codec(cat).Encode(&p)
		if err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 { // a failed decode in between leaves the pooled reader clean
			if _, err := schemas.Payments.Codec(cat).Decode(ctx, b[:len(b)-3]); err == nil {
				t.Fatal("truncated payment decoded")
			}
		}
		d, err := schemas.Payments.Codec(cat).Decode(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		want, got = append(want, p), append(got, d)
	}
	for i := range want {
		if !reflect.DeepEqual(*got[i], want[i]) {
			t.Fatalf("payment %d changed after later decodes:\n got %+v\nwant %+v", i, *got[i], want[i])
		}
	}
}
