package schemas_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/schemas/schemastest"
)

func newCatalog(t *testing.T) (*schemas.Catalog, *sr.Client) {
	t.Helper()
	cat := schemastest.Catalog(t)
	return cat, cat.Registry()
}

func payment() schemas.PaymentSucceeded {
	return schemas.PaymentSucceeded{
		PaymentID:  "5f0c1d7e-3b7a-4a51-9f51-6a1c3c1f2b10",
		UserID:     42,
		Cart:       []schemas.CartItem{{Name: "MacBook", UnitPriceCents: 199900, Quantity: 1}, {Name: "Mouse", UnitPriceCents: 1990, Quantity: 2}},
		TotalCents: 203880,
		PaidAt:     time.Date(2026, 11, 27, 9, 30, 0, 123e6, time.UTC),
	}
}

func TestRoundTrip(t *testing.T) {
	cat, _ := newCatalog(t)
	ctx := context.Background()

	p := payment()
	b, err := schemas.Payments.Codec(cat).Encode(&p)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != schemas.Payments.Codec(cat).SchemaID() {
		t.Fatalf("header = % x, want magic 0 and schema ID %d", b[:5], schemas.Payments.Codec(cat).SchemaID())
	}
	got, err := schemas.Payments.Codec(cat).Decode(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, p) {
		t.Fatalf("payment round trip:\n got %+v\nwant %+v", *got, p)
	}

	o := schemas.OrderCreated{OrderID: schemas.OrderID(p.PaymentID), PaymentID: p.PaymentID, UserID: 42,
		Items: []schemas.OrderItem{{Name: "MacBook", UnitPriceCents: 199900, Quantity: 1}}, TotalCents: 199900,
		Status: schemas.OrderConfirmed, CreatedAt: p.PaidAt}
	rec, err := schemas.Orders.Codec(cat).Record(&o)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Topic != "order-created" || string(rec.Key) != "42" {
		t.Fatalf("order record goes to %s with key %q", rec.Topic, rec.Key)
	}
	gotOrder, err := schemas.Orders.Codec(cat).Decode(ctx, rec.Value)
	if err != nil || !reflect.DeepEqual(*gotOrder, o) {
		t.Fatalf("order round trip: %v\n got %+v\nwant %+v", err, gotOrder, o)
	}

	dl := schemas.DeadLetter{OriginalValue: nil, OriginalKey: []byte("7"), SourceTopic: "payment-successful",
		SourcePartition: 2, SourceOffset: 9, ErrorClass: "empty-value", Error: "no value", Service: "order", FailedAt: p.PaidAt}
	b, err = schemas.PaymentDLQ.Codec(cat).Encode(&dl)
	if err != nil {
		t.Fatal(err)
	}
	gotDL, err := schemas.PaymentDLQ.Codec(cat).Decode(ctx, b)
	if err != nil || !reflect.DeepEqual(*gotDL, dl) {
		t.Fatalf("dead letter round trip: %v\n got %+v\nwant %+v", err, gotDL, dl)
	}
}

func TestDecodeNamesEveryErrorClass(t *testing.T) {
	cat, _ := newCatalog(t)
	p := payment()
	good, err := schemas.Payments.Codec(cat).Encode(&p)
	if err != nil {
		t.Fatal(err)
	}
	order := schemas.OrderCreated{OrderID: "o", PaymentID: "p", UserID: 1, Status: "confirmed", CreatedAt: p.PaidAt}
	anOrder, err := schemas.Orders.Codec(cat).Encode(&order)
	if err != nil {
		t.Fatal(err)
	}
	unknownID := append([]byte{0, 0, 0, 0x30, 0x39}, good[5:]...) // schema 12345

	for _, tc := range []struct {
		name  string
		value []byte
		want  schemas.ErrorClass
	}{
		{"nil value", nil, schemas.EmptyValue},
		{"zero bytes", []byte{}, schemas.EmptyValue},
		{"raw JSON", []byte(`{"user_id": 1, "cart": []}`), schemas.BadMagicByte},
		{"shorter than the header", []byte{0, 0, 1}, schemas.BadMagicByte},
		{"magic byte 1", append([]byte{1}, good[1:]...), schemas.BadMagicByte},
		{"unknown schema ID", unknownID, schemas.UnknownSchemaID},
		{"another subject's schema", anOrder, schemas.WrongSubject},
		{"truncated body", good[:len(good)-4], schemas.AvroDecode},
		{"header only", good[:5], schemas.AvroDecode},
		{"trailing bytes", append(append([]byte{}, good...), 2, 4), schemas.AvroDecode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := schemas.Payments.Codec(cat).Decode(context.Background(), tc.value)
			var re *schemas.RecordError
			if !errors.As(err, &re) {
				t.Fatalf("Decode error = %v, want a *RecordError", err)
			}
			if re.Class != tc.want || re.ErrorClass() != string(tc.want) {
				t.Fatalf("class = %s (%v), want %s", re.Class, err, tc.want)
			}
		})
	}
}

func TestDecodeRetriesWhenRegistryIsDown(t *testing.T) {
	cat, _ := newCatalog(t)
	p := payment()
	b, err := schemas.Payments.Codec(cat).Encode(&p)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(b[1:5], 77) // an ID this codec has never seen

	reg, _ := schemas.NewRegistryClient("http://127.0.0.1:1") // nothing listens there
	offline := schemas.NewCatalog(reg)
	// With the registry down, a new ID may be a new version or poison:
	// the error must not be a RecordError, so the engine retries.
	_, err = schemas.Payments.Codec(offline).Decode(context.Background(), b)
	var re *schemas.RecordError
	if err == nil || errors.As(err, &re) {
		t.Fatalf("Decode with the registry down = %v, want a retryable error", err)
	}
}

// TestSchemaEvolution is the schema challenge: a compatible v2 of
// PaymentSucceeded (a new field with a default) is accepted and both readers
// read both versions; an incompatible one is refused with 409.
func TestSchemaEvolution(t *testing.T) {
	cat, reg := newCatalog(t)
	ctx := context.Background()
	v1 := schemas.Payments.Text()
	subject := schemas.Payments.Subject

	incompatible := strings.Replace(v1, `{"name": "total_cents", "type": "long"},`,
		`{"name": "total_cents", "type": "long"}, {"name": "currency", "type": "string"},`, 1)
	_, err := reg.CreateSchema(ctx, subject, sr.Schema{Schema: incompatible, Type: sr.TypeAvro})
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusConflict || re.ErrorCode != 409 {
		t.Fatalf("registering a new field without default: err = %v, want HTTP 409", err)
	}

	v2 := strings.Replace(v1, `{"name": "total_cents", "type": "long"},`,
		`{"name": "total_cents", "type": "long"}, {"name": "currency", "type": "string", "default": "EUR"},`, 1)
	ss, err := reg.CreateSchema(ctx, subject, sr.Schema{Schema: v2, Type: sr.TypeAvro})
	if err != nil {
		t.Fatalf("registering a new field with default: %v", err)
	}
	if ss.ID == schemas.Payments.Codec(cat).SchemaID() || ss.Version != 2 {
		t.Fatalf("v2 got ID %d version %d, want a new ID and version 2", ss.ID, ss.Version)
	}

	// A v2 writer: the v1 fields plus currency, framed with v2's ID.
	v2schema, err := avro.ParseWithCache(v2, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	p := payment()
	body, err := avro.Marshal(v2schema, paymentV2{p.PaymentID, p.UserID, p.Cart, p.TotalCents, "EUR", p.PaidAt})
	if err != nil {
		t.Fatal(err)
	}
	b := binary.BigEndian.AppendUint32([]byte{0}, uint32(ss.ID))
	b = append(b, body...)
	got, err := schemas.Payments.Codec(cat).Decode(ctx, b)
	if err != nil {
		t.Fatalf("v1 reader on v2 data: %v", err)
	}
	if !reflect.DeepEqual(*got, p) {
		t.Fatalf("v1 reader on v2 data:\n got %+v\nwant %+v", *got, p)
	}
}

func TestDerivedIDsAreStable(t *testing.T) {
	a, b := schemas.OrderID("p-1"), schemas.OrderID("p-1")
	if a != b || a == schemas.OrderID("p-2") {
		t.Fatalf("OrderID not a function of the payment: %s %s %s", a, b, schemas.OrderID("p-2"))
	}
	if schemas.EmailID(a) != schemas.EmailID(b) || schemas.EmailID(a) == a {
		t.Fatal("EmailID not a function of the order")
	}
}
