package services_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/payment"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// answer is what a test keeps of an answer to POST /payment.
type answer struct {
	code       int
	retryAfter string
	PaymentID  string `json:"payment_id"`
	Reason     string `json:"reason"`
}

func payFor(t *testing.T, url, key, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/payment", strings.NewReader(body))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	// Bounded: without the admission bound, a payment past it would wait
	// for Kafka as long as the test holds it.
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Error(err)
		return answer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if err := json.Unmarshal(b, &a); err != nil {
		t.Errorf("answer %d is not JSON: %s", resp.StatusCode, b)
	}
	return a
}

// TestOverloadIsShedAndEveryAnswerIsAnOrder: a payment service held at a
// capacity of two payments gets a burst while Kafka is slow. The two it
// admitted are answered 200 once Kafka acknowledges them; every other is
// refused at once with 503, Retry-After and the reason, and nothing is
// written for it: a keyed one refused and retried later is charged once.
// In the end, the payments on payment-successful and the orders on
// order-created are exactly those answered 200.
func TestOverloadIsShedAndEveryAnswerIsAnOrder(t *testing.T) {
	tiny := payment.AdmissionOptions{Initial: 2, Min: 2, Max: 2}
	env := shoptest.Start(t, shop.Options{Services: []string{"payment", "order"}, Payment: payment.Options{Admission: tiny}}, nil)
	url := env.Shop.URL("payment")

	// Kafka holds every produce request until released: the services are
	// idle, so what comes is the admitted payments'.
	c := env.Stack.Cluster()
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll) // a failed test stops its services without waiting on Kafka
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	var held sync.WaitGroup
	admitted := make([]answer, 2)
	for i := range admitted {
		held.Go(func() {
			admitted[i] = payFor(t, url, "", fmt.Sprintf(`{"user_id": %d, "cart": [{"name": "TV", "price": 499, "quantity": 1}]}`, 100+i))
		})
	}
	eventually(t, 10*time.Second, func() error {
		if n, _ := sample(scrape(t, url+"/metrics"), "shop_payments_admitted_total", nil); n != 2 {
			return fmt.Errorf("%v payments admitted, want the 2 the bound holds", n)
		}
		return nil
	})

	const keyed = `{"user_id": 7, "cart": [{"name": "Lamp", "price": 12.50, "quantity": 2}]}`
	for i := range 10 {
		key, body := "", fmt.Sprintf(`{"user_id": %d, "cart": [{"name": "TV", "price": 499, "quantity": 1}]}`, 200+i)
		if i == 0 {
			key, body = "black-friday-1", keyed
		}
		a := payFor(t, url, key, body)
		if a.code != http.StatusServiceUnavailable || a.retryAfter != "1" || a.Reason != "overloaded" {
			t.Fatalf("payment %d past the bound: %+v, want 503 with Retry-After 1 and reason overloaded", i, a)
		}
	}
	if n, _ := sample(scrape(t, url+"/metrics"), "shop_payments_shed_total", nil); n != 10 {
		t.Fatalf("shop_payments_shed_total = %v, want 10", n)
	}

	releaseAll()
	held.Wait()
	for i, a := range admitted {
		if a.code != http.StatusOK || a.PaymentID == "" {
			t.Fatalf("admitted payment %d: %+v, want 200", i, a)
		}
	}
	retried := payFor(t, url, "black-friday-1", keyed)
	if retried.code != http.StatusOK {
		t.Fatalf("the keyed payment retried after its 503: %+v, want 200 (a first try)", retried)
	}
	if again := payFor(t, url, "black-friday-1", keyed); again.code != http.StatusOK || again.PaymentID != retried.PaymentID {
		t.Fatalf("the keyed payment retried again: %+v, want the same payment %s", again, retried.PaymentID)
	}

	answered := []string{admitted[0].PaymentID, admitted[1].PaymentID, retried.PaymentID}
	slices.Sort(answered)
	ctx := context.Background()
	eventually(t, 20*time.Second, func() error {
		var orders []string
		for _, r := range readCommitted(t, env.Stack.Brokers, schemas.Orders.Name) {
			o, err := schemas.Orders.Codec(env.Catalog).Decode(ctx, r.Value)
			if err != nil {
				return err
			}
			orders = append(orders, o.PaymentID)
		}
		slices.Sort(orders)
		if !slices.Equal(orders, answered) {
			return fmt.Errorf("orders of payments %v, want those answered 200: %v", orders, answered)
		}
		return nil
	})
	var charged []string
	for _, r := range readCommitted(t, env.Stack.Brokers, schemas.Payments.Name) {
		p, err := schemas.Payments.Codec(env.Catalog).Decode(ctx, r.Value)
		if err != nil {
			t.Fatal(err)
		}
		charged = append(charged, p.PaymentID)
	}
	slices.Sort(charged)
	if !slices.Equal(charged, answered) {
		t.Fatalf("payments charged %v, want exactly those answered 200: %v", charged, answered)
	}
}
