package services_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// pay posts body with an Idempotency-Key (none when key is ""), and returns
// the status, the raw answer and whether it was a replay.
func pay(t *testing.T, url, key, body string) (int, string, bool) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/payment", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Idempotent-Replayed") == "true"
}

const (
	lamp  = `{"user_id": 7, "cart": [{"name": "Lamp", "price": 12.50, "quantity": 2}]}`
	chair = `{"user_id": 7, "cart": [{"name": "Chair", "price": 80, "quantity": 1}]}`
)

// TestIdempotencyKeyAtTheEdge: the retry contract, status by status.
func TestIdempotencyKeyAtTheEdge(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"payment"}}, nil)
	url := env.Shop.URL("payment")

	code, first, replayed := pay(t, url, "order-1001", lamp)
	if code != 200 || replayed || !strings.Contains(first, `"payment_id":"`) {
		t.Fatalf("first try: %d %s (replayed %v)", code, first, replayed)
	}
	for _, tc := range []struct {
		name, key, body string
		code            int
		want            string // in the answer
		replay          bool
	}{
		{"the same request again", "order-1001", lamp, 200, first, true},
		{"the same key quoted as a structured-field string", `"order-1001"`, lamp, 200, first, true},
		{"the same body spaced otherwise", "order-1001", strings.ReplaceAll(lamp, " ", ""), 200, first, true},
		{"the same key, another body", "order-1001", chair, 422, `"field":"Idempotency-Key"`, false},
		{"the same key, another user", "order-1001", strings.Replace(lamp, "7", "8", 1), 200, `"user_id":8`, false},
		{"an empty key", `""`, lamp, 400, `"field":"Idempotency-Key"`, false},
		{"a key of 256 characters", strings.Repeat("k", 256), lamp, 400, `"field":"Idempotency-Key"`, false},
		{"a key of 255 characters", strings.Repeat("k", 255), lamp, 200, `"status":"success"`, false},
		{"a key with a tab", "order\t1", lamp, 400, `"field":"Idempotency-Key"`, false},
		{"a key that is not ASCII", "commande-é", lamp, 400, `"field":"Idempotency-Key"`, false},
		{"no key: a new payment each time", "", lamp, 200, `"status":"success"`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, got, replayed := pay(t, url, tc.key, tc.body)
			if code != tc.code || !strings.Contains(got, strings.TrimSpace(tc.want)) || replayed != tc.replay {
				t.Fatalf("%d %s (replayed %v); want %d with %s (replayed %v)", code, got, replayed, tc.code, tc.want, tc.replay)
			}
		})
	}
	if _, again, _ := pay(t, url, "", lamp); again == first {
		t.Fatal("a request without a key got the answer of another")
	}

	// Written once: the key's payment, the other user's, the 255-character
	// key's and the two without a key.
	recs, err := infra.ReadTopic(context.Background(), env.Stack.Brokers, schemas.Payments.Name, kgo.ReadCommitted(), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 {
		t.Fatalf("%d payments on %s, want 5", len(recs), schemas.Payments.Name)
	}
}

// TestKeyInFlightIs409: while the first request waits for Kafka, a second
// with the same key is refused with 409 and writes nothing; the first
// then succeeds, and a retry after it replays its answer.
func TestKeyInFlightIs409(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"payment"}}, nil)
	url := env.Shop.URL("payment")
	c := env.Stack.Cluster()
	hold, holding := make(chan struct{}), make(chan struct{})
	var held sync.Once
	// The service is idle: the next produce request is the payment's
	// (Produce v13 names topics by ID, so it is told by its order).
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		held.Do(func() {
			close(holding)
			c.SleepControl(func() { <-hold })
		})
		return nil, nil, false
	})
	firstDone := make(chan string, 1)
	go func() {
		code, body, _ := pay(t, url, "slow-1", lamp)
		firstDone <- fmt.Sprint(code, " ", body)
	}()
	select {
	case <-holding: // the first request's payment is on its way, not acknowledged
	case <-time.After(10 * time.Second):
		t.Fatal("the first payment never reached Kafka")
	}
	if code, body, _ := pay(t, url, "slow-1", lamp); code != 409 || !strings.Contains(body, `"field":"Idempotency-Key"`) {
		t.Fatalf("second try while the first waits: %d %s, want 409", code, body)
	}
	if code, body, _ := pay(t, url, "slow-1", chair); code != 422 {
		t.Fatalf("another body while the first waits: %d %s, want 422", code, body)
	}
	close(hold)
	first := <-firstDone
	if !strings.HasPrefix(first, "200 ") {
		t.Fatalf("the first request: %s", first)
	}
	if code, again, replayed := pay(t, url, "slow-1", lamp); code != 200 || !replayed || "200 "+again != first {
		t.Fatalf("after the first was answered: %d %s (replayed %v), want its answer", code, again, replayed)
	}
}

// TestRestartedPaymentServiceReplaysItsAnswers: what the payment service
// knows of past keys comes from Kafka, so a new instance, or a restarted
// one, gives the same answer and writes nothing.
func TestRestartedPaymentServiceReplaysItsAnswers(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"payment"}}, nil)
	code, first, _ := pay(t, env.Shop.URL("payment"), "order-2002", lamp)
	if code != 200 {
		t.Fatalf("%d %s", code, first)
	}
	if err := env.Shop.Stop(); err != nil {
		t.Fatal(err)
	}
	cfg := env.Config
	cfg.InstanceID = "2"
	again := shoptest.Services(t, cfg, env.Catalog, shop.Options{Services: []string{"payment"}})
	code, replay, replayed := pay(t, again.URL("payment"), "order-2002", lamp)
	if code != 200 || !replayed || replay != first {
		t.Fatalf("after the restart: %d %s (replayed %v); before: %s", code, replay, replayed, first)
	}
	recs, err := infra.ReadTopic(context.Background(), env.Stack.Brokers, schemas.Payments.Name, kgo.ReadCommitted(), 500*time.Millisecond)
	if err != nil || len(recs) != 1 {
		t.Fatalf("%d payments written (%v), want 1", len(recs), err)
	}
}

// TestDuplicatePaymentsBecomeOneOrder: a payment written twice (two
// instances racing on one key, a replayed producer) becomes one order and
// one email, however the order service restarts in between, and analytics
// counts it once.
func TestDuplicatePaymentsBecomeOneOrder(t *testing.T) {
	env := shoptest.Start(t, shop.Options{}, nil)
	ctx := context.Background()
	cl, _ := shoptest.Clients(t, env.Stack)
	write := func(p schemas.PaymentSucceeded) {
		t.Helper()
		rec, err := schemas.Payments.Codec(env.Catalog).Record(&p)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	p := schemas.PaymentSucceeded{PaymentID: schemas.PaymentID(7, "order-3003"), UserID: 7,
		Cart: []schemas.CartItem{{Name: "Lamp", UnitPriceCents: 1250, Quantity: 2}}, TotalCents: 2500,
		PaidAt: time.Now().UTC().Truncate(time.Millisecond)}
	write(p)
	write(p) // a duplicate in the same stretch of the log
	analytics := func(want string) {
		t.Helper()
		eventually(t, 15*time.Second, func() error {
			var a map[string]any
			get(t, env.Shop.URL("analytics")+"/analytics", &a)
			if got := fmt.Sprintf("payments=%v orders=%v emails=%v revenue=%v duplicates=%v", a["total_payments"], a["total_orders"],
				a["total_emails"], a["total_revenue"], a["duplicates_dropped"]); got != want {
				return fmt.Errorf("analytics: %s, want %s", got, want)
			}
			return nil
		})
	}
	analytics("payments=1 orders=1 emails=1 revenue=25.00 duplicates=1")

	// A new order instance restores what was ordered from order-created.
	if err := env.Shop.Stop(); err != nil {
		t.Fatal(err)
	}
	cfg := env.Config
	cfg.InstanceID = "2"
	env.Shop = shoptest.Services(t, cfg, env.Catalog, shop.Options{})
	write(p) // after the restart
	analytics("payments=1 orders=1 emails=1 revenue=25.00 duplicates=2")

	orders, err := infra.ReadTopic(ctx, env.Stack.Brokers, schemas.Orders.Name, kgo.ReadCommitted(), 500*time.Millisecond)
	if err != nil || len(orders) != 1 {
		t.Fatalf("%d orders (%v), want 1", len(orders), err)
	}
	dups, err := infra.ReadTopic(ctx, env.Stack.Brokers, schemas.Duplicates.Name, kgo.ReadCommitted(), 500*time.Millisecond)
	if err != nil || len(dups) != 2 {
		t.Fatalf("%d duplicates recorded (%v), want 2", len(dups), err)
	}
	d, err := schemas.Duplicates.Codec(env.Catalog).Decode(ctx, dups[1].Value)
	if err != nil || d.PaymentID != p.PaymentID || d.OrderOffset != orders[0].Offset || d.SourceOffset <= 1 {
		t.Fatalf("duplicate %+v (%v): want payment %s, order offset %d", d, err, p.PaymentID, orders[0].Offset)
	}
}

// TestAtLeastOnceKeepsTheDuplicates is the control: without the store (the
// at-least-once mode), the same duplicate becomes a second order.
func TestAtLeastOnceKeepsTheDuplicates(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"order"}}, func(cfg *config.Config) { cfg.AtLeastOnce = true })
	ctx := context.Background()
	cl, _ := shoptest.Clients(t, env.Stack)
	p := schemas.PaymentSucceeded{PaymentID: schemas.PaymentID(7, "order-4004"), UserID: 7,
		Cart: []schemas.CartItem{{Name: "Lamp", UnitPriceCents: 1250, Quantity: 2}}, TotalCents: 2500,
		PaidAt: time.Now().UTC().Truncate(time.Millisecond)}
	rec, err := schemas.Payments.Codec(env.Catalog).Record(&p)
	if err != nil {
		t.Fatal(err)
	}
	dup := *rec
	if err := cl.ProduceSync(ctx, rec, &dup).FirstErr(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		orders, err := infra.ReadTopic(ctx, env.Stack.Brokers, schemas.Orders.Name, kgo.ReadCommitted(), 200*time.Millisecond)
		if err != nil || len(orders) != 2 {
			return fmt.Errorf("%d orders (%v), want the duplicate ordered twice", len(orders), err)
		}
		return nil
	})
}
