package email_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/schemas/schemastest"
	"github.com/blackfriday-kafka/shop/services/email"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// The fold of emails and deliveries gives each email its state whatever
// order the two topics are read in, counts a resend's delivery once, and
// comes back the same from a checkpoint.
func TestDeliveriesFold(t *testing.T) {
	cat := schemastest.Catalog(t)
	codec := schemas.Emails.Codec(cat)
	ctx := context.Background()
	emailAt := func(e *schemas.EmailSent, offset int64) *kgo.Record {
		r, err := codec.Record(e)
		if err != nil {
			t.Fatal(err)
		}
		r.Partition, r.Offset = 1, offset
		return r
	}
	deliveryOf := func(e *schemas.EmailSent, offset int64, state string) *kgo.Record {
		v, _ := json.Marshal(email.Delivery{EmailID: e.EmailID, State: state, Partition: 1, Offset: offset, At: time.Now()})
		return &kgo.Record{Topic: schemas.EmailDeliveries.Name, Key: []byte(e.EmailID), Value: v}
	}
	a, b, c := queued(1, "a"), queued(1, "b"), queued(1, "c")
	old := queued(2, "old")
	old.Status = "sent" // written before the outbox: no delivery expected

	d := email.NewDeliveries(codec, 10, shoptest.Logger(t))
	for _, r := range []*kgo.Record{
		emailAt(old, 0),
		emailAt(a, 1),
		deliveryOf(b, 2, email.Delivered), // before its email
		deliveryOf(a, 1, email.Delivered),
		deliveryOf(a, 1, email.Delivered), // a resend's
		emailAt(b, 2),
		emailAt(c, 3),
		{Topic: schemas.EmailDeliveries.Name, Value: []byte("not json")},
	} {
		if err := d.Apply(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	check := func(d *email.Deliveries) {
		t.Helper()
		u := d.Undelivered()
		if u.Count != 1 || u.Delivered != 2 || u.Rejected != 0 || u.Oldest == nil || !u.Oldest.Equal(c.SentAt) {
			t.Fatalf("undelivered = %+v, want c alone waiting since %s, 2 delivered", u, c.SentAt)
		}
		count, newest := d.Newest(10)
		want := []string{email.Queued, email.Delivered, email.Delivered, "sent"}
		if count != 4 || len(newest) != 4 {
			t.Fatalf("Newest = %d, %d emails; want 4", count, len(newest))
		}
		for i, e := range newest {
			if e.Status != want[i] || e.MessageID != email.MessageID(e.EmailID) {
				t.Fatalf("email %d (%s) shows %q, want %q", i, e.EmailID, e.Status, want[i])
			}
		}
	}
	check(d)
	snap, err := d.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored := email.NewDeliveries(codec, 10, shoptest.Logger(t))
	if err := restored.Restore(snap); err != nil {
		t.Fatal(err)
	}
	check(restored)
	if err := restored.Apply(ctx, deliveryOf(c, 3, email.Rejected)); err != nil {
		t.Fatal(err)
	}
	if u := restored.Undelivered(); u.Count != 0 || u.Rejected != 1 {
		t.Fatalf("after c's rejection: %+v", u)
	}
	if _, newest := restored.Newest(1); newest[0].Status != email.Rejected {
		t.Fatalf("c shows %q, want rejected", newest[0].Status)
	}
}
