//go:build kafka

package kafkatest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/blackfriday-kafka/shop/infra/mailbox"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/target"
	"github.com/blackfriday-kafka/shop/services/email"
)

// TestConfirmationsReachMailpit runs the shop on the real cluster with the
// email service delivering to the mail server of make kafka-up (Mailpit,
// SMTP_ADDR and MAILPIT_URL, by default localhost:1025 and :8025): each
// payment's confirmation is in Mailpit's inbox once, under the Message-ID
// derived from its email_id, with the order's total in its text.
func TestConfirmationsReachMailpit(t *testing.T) {
	inbox := mailbox.NewClient(target.Env("MAILPIT_URL", "http://localhost:8025"))
	ctx := context.Background()
	if err := inbox.Ready(ctx); err != nil {
		t.Fatalf("no mail server's inbox: %v (make kafka-up starts Mailpit)", err)
	}
	s := startShop(t, []string{"payment", "order", "email"}, fmt.Sprintf("mail-%d", time.Now().UnixNano()), 0)
	want := map[string]int64{} // Message-ID -> total cents
	for i := range 5 {
		p := schemas.PaymentSucceeded{UserID: int64(900 + i), Cart: []schemas.CartItem{{Name: "Kettle", UnitPriceCents: 2999, Quantity: int32(i + 1)}}}
		_, paymentID, _, err := postPayment(ctx, s.URL("payment"), p)
		if err != nil {
			t.Fatal(err)
		}
		want[email.MessageID(schemas.EmailID(schemas.OrderID(paymentID)))] = 2999 * int64(i+1)
	}
	var msgs []mailbox.Summary
	eventually(t, time.Minute, func() error {
		all, err := inbox.Messages(ctx)
		if err != nil {
			return err
		}
		msgs = msgs[:0]
		for _, m := range all {
			if _, ok := want[m.MessageID]; ok {
				msgs = append(msgs, m)
			}
		}
		if len(msgs) < len(want) {
			return fmt.Errorf("%d of %d confirmations in Mailpit", len(msgs), len(want))
		}
		return nil
	})
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[m.MessageID] {
			t.Errorf("%s is in the inbox twice", m.MessageID)
		}
		seen[m.MessageID] = true
		total := "Total: " + schemas.Euros(want[m.MessageID]).String() + " EUR"
		if !strings.Contains(m.Snippet, total) {
			t.Errorf("%s: text %q lacks %q", m.MessageID, m.Snippet, total)
		}
		raw, err := inbox.Raw(ctx, m.ID)
		if err != nil || !strings.Contains(string(raw), "Message-ID: <"+m.MessageID+">") {
			t.Errorf("%s: raw message (%v) lacks its Message-ID header:\n%s", m.MessageID, err, raw)
		}
	}
}
