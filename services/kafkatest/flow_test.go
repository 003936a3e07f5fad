//go:build kafka

package kafkatest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
)

// TestCoreFlow runs the four services against the real cluster and follows
// payments through them: POST /payment answers only after the ack, each
// payment becomes one order and one email, /orders, /emails and /analytics
// show them, a bad payment is refused with nothing written, and make poison's
// pills all reach the dead letter queue.
func TestCoreFlow(t *testing.T) {
	waitISRFull(t, 60*time.Second)
	from := endOffsets(t, schemas.Orders.Name, schemas.Emails.Name)
	s := startShop(t, config.Services, "kt-1", 0)
	w := newWatch(t, from)
	ctx := context.Background()

	// An invalid payment: 400 naming the field, and nothing on the topic.
	before := endOffsets(t, schemas.Payments.Name)
	resp, err := http.Post(s.URL("payment")+"/payment", "application/json",
		strings.NewReader(`{"user_id": 42, "cart": [{"name": "MacBook", "price": "cheap", "quantity": 1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var refusal struct{ Status, Field string }
	err = json.NewDecoder(resp.Body).Decode(&refusal)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusBadRequest || refusal.Field != "cart[0].price" {
		t.Fatalf("invalid payment: %d %+v %v, want 400 naming cart[0].price", resp.StatusCode, refusal, err)
	}
	if after := endOffsets(t, schemas.Payments.Name); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a refused payment moved payment-successful from %v to %v", before, after)
	}

	// Valid payments over HTTP.
	const n = 40
	rng := rand.New(rand.NewPCG(1, 2))
	paid := make(map[string]int64, n)
	start := time.Now()
	for range n {
		p := newPayment(rng)
		status, id, cents, err := postPayment(ctx, s.URL("payment"), p)
		if err != nil || status != http.StatusOK {
			t.Fatalf("payment %d: %v", status, err)
		}
		if cents != p.TotalCents {
			t.Fatalf("payment %s: total %d cents, want %d", id, cents, p.TotalCents)
		}
		paid[id] = cents
	}
	t.Logf("%d payments accepted over HTTP in %s", n, time.Since(start).Round(time.Millisecond))
	w.waitDrained(t, paid, 60*time.Second)
	t.Logf("every payment has its order and email %s after the first", time.Since(start).Round(time.Millisecond))

	// The views show them.
	eventually(t, 30*time.Second, func() error {
		var orders struct {
			Count  int `json:"count"`
			Orders []struct {
				OrderID   string `json:"order_id"`
				PaymentID string `json:"payment_id"`
			} `json:"orders"`
		}
		if err := getJSON(s.URL("order")+"/orders?limit=1000", &orders); err != nil {
			return err
		}
		shown := map[string]bool{}
		for _, o := range orders.Orders {
			shown[o.PaymentID] = o.OrderID == schemas.OrderID(o.PaymentID)
		}
		for id := range paid {
			if !shown[id] {
				return fmt.Errorf("/orders (count %d) does not show payment %s with its order", orders.Count, id)
			}
		}
		var emails struct {
			Count  int                 `json:"count"`
			Emails []schemas.EmailSent `json:"emails_sent"`
		}
		if err := getJSON(s.URL("email")+"/emails?limit=1000", &emails); err != nil {
			return err
		}
		emailed := map[string]bool{}
		for _, e := range emails.Emails {
			emailed[e.OrderID] = true
		}
		for id := range paid {
			if !emailed[schemas.OrderID(id)] {
				return fmt.Errorf("/emails (count %d) does not show the email of payment %s", emails.Count, id)
			}
		}
		return nil
	})

	// make poison's tool against these services: every pill reaches
	// dlq-payment with its error class, and the shop stays healthy.
	poison := exec.Command("go", "run", "./scripts/poison", "-timeout", "90s")
	poison.Dir = root
	poison.Env = append(os.Environ(), "KAFKA_BROKERS="+strings.Join(brokers, ","), "SCHEMA_REGISTRY_URL="+registryURL,
		"PAYMENT_URL="+s.URL("payment"), "ORDER_URL="+s.URL("order"), "EMAIL_URL="+s.URL("email"), "ANALYTICS_URL="+s.URL("analytics"))
	out, err := poison.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if err != nil || !strings.HasPrefix(last, "poison: ") || !strings.HasSuffix(last, " routed to DLQ, services healthy") {
		t.Fatalf("scripts/poison: %v\n%s", err, out)
	}
	t.Log(last)

	// Analytics agrees with the committed log: every order and email on
	// the topics, and the revenue to the cent.
	whole := Offsets{}
	for topic, parts := range from {
		whole[topic] = map[int32]int64{}
		for p := range parts {
			whole[topic][p] = 0
		}
	}
	var topicOrders, topicEmails, topicCents int64
	for _, r := range readFrom(t, whole, kgo.ReadCommitted(), 3*time.Second) {
		switch r.Topic {
		case schemas.Orders.Name:
			o, err := schemas.Orders.Codec(catalog).Decode(ctx, r.Value)
			if err != nil {
				t.Fatal(err)
			}
			topicOrders++
			topicCents += o.TotalCents
		case schemas.Emails.Name:
			topicEmails++
		}
	}
	eventually(t, 30*time.Second, func() error {
		var a struct {
			TotalOrders  int64       `json:"total_orders"`
			TotalEmails  int64       `json:"total_emails"`
			TotalRevenue json.Number `json:"total_revenue"`
		}
		if err := getJSON(s.URL("analytics")+"/analytics", &a); err != nil {
			return err
		}
		cents, err := schemas.ParseEuros(a.TotalRevenue.String())
		if err != nil {
			return err
		}
		if a.TotalOrders != topicOrders || a.TotalEmails != topicEmails || int64(cents) != topicCents {
			return fmt.Errorf("analytics: %d orders, %d emails, %d cents; the topics hold %d orders, %d emails, %d cents",
				a.TotalOrders, a.TotalEmails, cents, topicOrders, topicEmails, topicCents)
		}
		return nil
	})
	t.Logf("analytics agrees with the log: %d orders, %d emails, %s revenue", topicOrders, topicEmails, schemas.Euros(topicCents))

	checkExactlyOnce(t, from, paid)
}
