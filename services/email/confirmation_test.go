package email

import (
	"fmt"
	"testing"

	"github.com/blackfriday-kafka/shop/schemas"
)

func TestConfirmation(t *testing.T) {
	for _, o := range []schemas.OrderCreated{
		{OrderID: schemas.OrderID("p1"), UserID: 42, TotalCents: 199900},
		{OrderID: schemas.OrderID("p2"), UserID: 1, TotalCents: 5},
		{OrderID: schemas.OrderID("p3"), UserID: 9_223_372_036_854_775_807, TotalCents: 123456789012},
	} {
		to, subject := Confirmation(&o)
		wantTo := fmt.Sprintf("user_%d@example.com", o.UserID)
		wantSubject := fmt.Sprintf("Order %s confirmed: %s EUR", o.OrderID, schemas.Euros(o.TotalCents))
		if to != wantTo || subject != wantSubject {
			t.Errorf("Confirmation = %q, %q; want %q, %q", to, subject, wantTo, wantSubject)
		}
	}
}
