package schemas_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/schemas/schemastest"
)

// Every row of the table is found by its name, keys its records by its
// rule, and carries the schema file it names.
func TestTableRows(t *testing.T) {
	cat, _ := newCatalog(t)
	p := payment()
	o := schemas.OrderCreated{OrderID: "o", PaymentID: p.PaymentID, UserID: 42, Status: "confirmed", CreatedAt: p.PaidAt}
	e := schemas.EmailSent{EmailID: "e", OrderID: "o", UserID: 42, To: "user_42@example.com", Subject: "s", Status: "sent", SentAt: p.PaidAt}
	dl := schemas.DeadLetter{OriginalKey: []byte("raw key"), SourceTopic: "payment-successful", ErrorClass: "empty-value", FailedAt: p.PaidAt}
	keys := map[string]string{}
	for name, rec := range map[string]func() (string, error){
		schemas.Payments.Name:   func() (string, error) { r, err := schemas.Payments.Codec(cat).Record(&p); return key(r.Key), err },
		schemas.Orders.Name:     func() (string, error) { r, err := schemas.Orders.Codec(cat).Record(&o); return key(r.Key), err },
		schemas.Emails.Name:     func() (string, error) { r, err := schemas.Emails.Codec(cat).Record(&e); return key(r.Key), err },
		schemas.PaymentDLQ.Name: func() (string, error) { r, err := schemas.PaymentDLQ.Codec(cat).Record(&dl); return key(r.Key), err },
		schemas.OrderDLQ.Name:   func() (string, error) { r, err := schemas.OrderDLQ.Codec(cat).Record(&dl); return key(r.Key), err },
	} {
		k, err := rec()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		keys[name] = k
	}
	for _, name := range []string{"payment-successful", "order-created", "email-sent", "dlq-payment", "dlq-order"} {
		s, ok := schemas.Lookup(name)
		if !ok {
			t.Fatalf("Lookup(%q) found nothing", name)
		}
		if s.Subject != name+"-value" || !strings.Contains(s.Text(), `"name": "`+s.ValueType[strings.LastIndex(s.ValueType, ".")+1:]+`"`) {
			t.Errorf("%s: subject %s, value type %s", name, s.Subject, s.ValueType)
		}
		want := "42"
		if s.Key == schemas.BySource {
			want = "raw key"
		}
		if keys[name] != want {
			t.Errorf("%s keys its records %q, want %q (%s)", name, keys[name], want, s.Key)
		}
	}
	if _, ok := schemas.Lookup("cli-demo"); ok {
		t.Fatal("Lookup found a topic the shop does not have")
	}
	if got := strings.Join(schemas.TopicNames(), ","); got != "payment-successful,order-created,email-sent,dlq-payment,dlq-order,payment-duplicates" {
		t.Fatalf("topics in the order of the flow: %s", got)
	}
}

func key(b []byte) string { return string(b) }

// A catalog on a registry without the shop's schemas says which subject
// lacks which schema file, and encodes nothing.
func TestResolveNamesWhatIsMissing(t *testing.T) {
	cat := schemas.NewCatalog(schemastest.Registry(t))
	err := cat.Resolve(context.Background(), schemas.Orders.Spec, schemas.PaymentDLQ.Spec)
	var missing *schemas.MissingSchemaError
	if !errors.As(err, &missing) || !strings.Contains(err.Error(), "subject order-created-value lacks the schema of order_created.avsc") ||
		!strings.Contains(err.Error(), "subject dlq-payment-value lacks the schema of dead_letter.avsc") {
		t.Fatalf("Resolve = %v, want both subjects named with their files", err)
	}
	if cat.Missing(schemas.Orders.Spec) == nil {
		t.Fatal("Missing says nothing lacks")
	}
	o := schemas.OrderCreated{OrderID: "o"}
	if _, err := schemas.Orders.Codec(cat).Encode(&o); !errors.As(err, &missing) {
		t.Fatalf("Encode before the schema is registered = %v, want a MissingSchemaError", err)
	}
	if err := cat.Missing(schemas.Payments.Spec); err == nil {
		t.Fatal("a topic never resolved counts as resolved")
	}
}
