package services_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// TestSecureShop is SECURE=1 make run: every service signed in as its own
// principal, allowed only what the access table grants. The README's
// payment still becomes an order, an email and analytics; a stranger gets
// nothing from the brokers or the registry, and the payment principal
// cannot forge an order.
func TestSecureShop(t *testing.T) {
	env := shoptest.StartSecure(t, shop.Options{})

	code, out := post(t, env.Shop.URL("payment")+"/payment",
		`{"user_id": 42, "cart": [{"name": "MacBook", "price": 1999, "quantity": 1}]}`)
	if code != http.StatusOK || out["status"] != "success" {
		t.Fatalf("POST /payment: %d %v", code, out)
	}
	eventually(t, 10*time.Second, func() error {
		var orders, emails struct {
			Count int `json:"count"`
		}
		get(t, env.Shop.URL("order")+"/orders", &orders)
		get(t, env.Shop.URL("email")+"/emails", &emails)
		var a map[string]any
		get(t, env.Shop.URL("analytics")+"/analytics", &a)
		if orders.Count != 1 || emails.Count != 1 || fmt.Sprint(a["total_orders"]) != "1" || fmt.Sprint(a["total_revenue"]) != "1999.00" {
			return fmt.Errorf("orders %d, emails %d, analytics %v", orders.Count, emails.Count, a)
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.Run("a client without credentials is refused", func(t *testing.T) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(env.Stack.Brokers...), kgo.RequestRetries(0))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.Ping(ctx); err == nil {
			t.Fatal("a client without credentials reached the brokers")
		}
	})
	t.Run("the payment principal cannot write an order", func(t *testing.T) {
		cl, err := kgo.NewClient(append(env.Config.As("payment").Kafka(), kgo.RequestRetries(0))...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		err = cl.ProduceSync(ctx, &kgo.Record{Topic: schemas.Orders.Name, Key: []byte("42"), Value: []byte("forged")}).FirstErr()
		if !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("payment writing order-created: %v, want TOPIC_AUTHORIZATION_FAILED", err)
		}
		var orders struct {
			Count int `json:"count"`
		}
		get(t, env.Shop.URL("order")+"/orders", &orders)
		if orders.Count != 1 {
			t.Fatalf("/orders count %d after the forgery, want 1", orders.Count)
		}
	})
	t.Run("a registry write without credentials gets 401", func(t *testing.T) {
		resp, err := http.Post(env.Stack.RegistryURL+"/subjects/forged-value/versions", "application/vnd.schemaregistry.v1+json",
			strings.NewReader(`{"schema": "\"string\""}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("POST /subjects/forged-value/versions without credentials: %d, want 401", resp.StatusCode)
		}
	})
}
