package schemas

import "github.com/google/uuid"

// IDs downstream of a payment are derived, not drawn: a transaction retried
// after a crash writes the same order_id and email_id, so a duplicate (if one
// ever slipped through) would be visible as such.
var (
	orderNamespace = uuid.MustParse("19d2b9be-06f6-4eb6-bb10-85d92dfdbafc")
	emailNamespace = uuid.MustParse("c2469845-a468-47e3-8f5a-5c69880ca64f")
)

// OrderID is the ID of the order made from payment paymentID (a UUIDv5).
func OrderID(paymentID string) string {
	return uuid.NewSHA1(orderNamespace, []byte(paymentID)).String()
}

// EmailID is the ID of the confirmation email of order orderID (a UUIDv5).
func EmailID(orderID string) string {
	return uuid.NewSHA1(emailNamespace, []byte(orderID)).String()
}
