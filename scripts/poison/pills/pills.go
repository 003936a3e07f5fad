// Package pills is a collection of poison pills: records and requests that
// must be refused, each with the refusal it must get.
package pills

import (
	"encoding/binary"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/blackfriday-kafka/shop/schemas"
)

// Pill is one poison pill.
type Pill struct {
	Name  string
	Value []byte
	// Class is the error_class its dead letter must carry.
	Class schemas.ErrorClass
	// Field is what a 400 from POST /payment must name, for the pills
	// that are HTTP bodies.
	Field string
}

// Tutorial are the tutorial's eight malformed payments, as raw JSON: posted
// to /payment each gets a 400 naming the field; written straight to Kafka
// each is not Avro, so it is a bad-magic-byte dead letter.
func Tutorial() []Pill {
	const cart = `[{"name": "iPhone", "price": 999, "quantity": 1}]`
	return []Pill{
		{Name: "invalid JSON", Value: []byte(`{"user_id": 1, "cart": [`), Field: "body"},
		{Name: "empty object", Value: []byte(`{}`), Field: "user_id"},
		{Name: "missing cart", Value: []byte(`{"user_id": 7}`), Field: "cart"},
		{Name: "null user_id", Value: []byte(`{"user_id": null, "cart": ` + cart + `}`), Field: "user_id"},
		{Name: "user_id of the wrong type", Value: []byte(`{"user_id": "seven", "cart": ` + cart + `}`), Field: "user_id"},
		{Name: "cart that is not a list", Value: []byte(`{"user_id": 7, "cart": "iPhone"}`), Field: "cart"},
		{Name: "item without price", Value: []byte(`{"user_id": 7, "cart": [{"name": "iPhone", "quantity": 1}]}`), Field: "cart[0].price"},
		{Name: "price of the wrong type", Value: []byte(`{"user_id": 7, "cart": [{"name": "iPhone", "price": "cheap", "quantity": 1}]}`), Field: "cart[0].price"},
	}
}

// Avro are pills that only a registry-aware consumer can catch: broken wire
// format, schemas that do not belong, and well-encoded payments that break
// the payment rules.
func Avro(cat *schemas.Catalog) ([]Pill, error) {
	good := payment(func(*schemas.PaymentSucceeded) {})
	valid, err := schemas.Payments.Codec(cat).Encode(&good)
	if err != nil {
		return nil, err
	}
	unknown := binary.BigEndian.AppendUint32([]byte{0}, 0x7fff_fff0)
	unknown = append(unknown, valid[5:]...)
	order := schemas.OrderCreated{OrderID: uuid.NewString(), PaymentID: good.PaymentID, UserID: good.UserID,
		Status: schemas.OrderConfirmed, CreatedAt: good.PaidAt}
	anOrder, err := schemas.Orders.Codec(cat).Encode(&order)
	if err != nil {
		return nil, err
	}
	ps := []Pill{
		{Name: "unknown schema ID", Value: unknown, Class: schemas.UnknownSchemaID},
		{Name: "valid header, truncated body", Value: valid[:len(valid)/2], Class: schemas.AvroDecode},
		{Name: "an order on the payments topic", Value: anOrder, Class: schemas.WrongSubject},
		{Name: "empty value", Value: nil, Class: schemas.EmptyValue},
	}
	for _, bad := range []struct {
		name  string
		spoil func(*schemas.PaymentSucceeded)
	}{
		{"negative price", func(p *schemas.PaymentSucceeded) { p.Cart[0].UnitPriceCents = -99900 }},
		{"zero quantity", func(p *schemas.PaymentSucceeded) { p.Cart[0].Quantity = 0 }},
		{"empty cart", func(p *schemas.PaymentSucceeded) { p.Cart = nil }},
		{"10,000-character name", func(p *schemas.PaymentSucceeded) { p.Cart[0].Name = strings.Repeat("x", 10_000) }},
	} {
		p := payment(bad.spoil)
		v, err := schemas.Payments.Codec(cat).Encode(&p)
		if err != nil {
			return nil, err
		}
		ps = append(ps, Pill{Name: bad.name, Value: v, Class: schemas.Validation})
	}
	return ps, nil
}

// All is every pill meant for Kafka: the tutorial's, then the Avro ones.
func All(cat *schemas.Catalog) ([]Pill, error) {
	ps := Tutorial()
	for i := range ps {
		ps[i].Class = schemas.BadMagicByte
	}
	avro, err := Avro(cat)
	return append(ps, avro...), err
}

// payment is a valid payment, then changed by breakIt.
func payment(breakIt func(*schemas.PaymentSucceeded)) schemas.PaymentSucceeded {
	p := schemas.PaymentSucceeded{
		PaymentID:  uuid.NewString(),
		UserID:     666,
		Cart:       []schemas.CartItem{{Name: "iPhone", UnitPriceCents: 99900, Quantity: 1}},
		TotalCents: 99900,
		PaidAt:     time.Now().UTC().Truncate(time.Millisecond),
	}
	breakIt(&p)
	p.TotalCents = schemas.CartTotal(p.Cart)
	return p
}
