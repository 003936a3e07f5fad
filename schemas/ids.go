package schemas

import (
	"crypto/sha1"
	"strconv"

	"github.com/google/uuid"
)

// IDs downstream of a payment are derived, not drawn: a transaction retried
// after a crash writes the same order_id and email_id, so a duplicate (if one
// ever slipped through) would be visible as such.
var (
	paymentNamespace = uuid.MustParse("3c0fd5e1-7d0e-4f43-9d6b-8a7c2e5b1f90")
	orderNamespace   = uuid.MustParse("19d2b9be-06f6-4eb6-bb10-85d92dfdbafc")
	emailNamespace   = uuid.MustParse("c2469845-a468-47e3-8f5a-5c69880ca64f")
)

// PaymentID is the ID of the payment a user asks for with an
// Idempotency-Key (a UUIDv5 of both): every retry of the request, on any
// instance of the payment service, names the same payment.
func PaymentID(userID int64, key string) string {
	return uuid5(paymentNamespace, strconv.FormatInt(userID, 10)+"/"+key)
}

// OrderID is the ID of the order made from payment paymentID (a UUIDv5).
func OrderID(paymentID string) string { return uuid5(orderNamespace, paymentID) }

// EmailID is the ID of the confirmation email of order orderID (a UUIDv5).
func EmailID(orderID string) string { return uuid5(emailNamespace, orderID) }

// uuid5 is uuid.NewSHA1(space, []byte(name)).String(), RFC 4122 version 5,
// with one allocation (the string) instead of five: every record derives one.
func uuid5(space uuid.UUID, name string) string {
	var buf [16 + 48]byte // a namespace and a UUID fit
	sum := sha1.Sum(append(append(buf[:0], space[:]...), name...))
	var id uuid.UUID
	copy(id[:], sum[:])
	id[6] = (id[6] & 0x0f) | 0x50 // version 5
	id[8] = (id[8] & 0x3f) | 0x80 // RFC 4122 variant
	return id.String()
}
