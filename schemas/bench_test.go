package schemas_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/schemas/schemastest"
)

// The hot paths of every record: encode, decode, validate.
//
//	go test -run '^$' -bench . -benchmem ./schemas/

func BenchmarkEncodePayment(b *testing.B) {
	cat := schemastest.Catalog(b)
	p := schemastest.Payment()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := schemas.Payments.Codec(cat).Encode(&p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeOrder(b *testing.B) {
	cat := schemastest.Catalog(b)
	o := schemastest.Order(schemastest.Payment())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := schemas.Orders.Codec(cat).Record(&o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodePayment(b *testing.B) {
	p := schemastest.Payment()
	benchDecode(b, schemas.Payments, &p)
}

func BenchmarkDecodeOrder(b *testing.B) {
	o := schemastest.Order(schemastest.Payment())
	benchDecode(b, schemas.Orders, &o)
}

// benchDecode is decoding v, as topic encodes it.
func benchDecode[V any](b *testing.B, topic schemas.Topic[V], v *V) {
	cat := schemastest.Catalog(b)
	value, err := topic.Codec(cat).Encode(v)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	for b.Loop() {
		if _, err := topic.Codec(cat).Decode(ctx, value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeParallel is decoding from every core at once, as the
// services do with one engine and one view each.
func BenchmarkDecodeParallel(b *testing.B) {
	cat := schemastest.Catalog(b)
	p := schemastest.Payment()
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
	p := schemastest.Payment()
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
	cat := schemastest.Catalog(t)
	ctx := context.Background()
	var want []schemas.PaymentSucceeded
	var got []*schemas.PaymentSucceeded
	for i := range 500 {
		p := schemastest.Payment()
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
