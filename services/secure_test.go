package services_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra/access/accesstest"
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

	// A client of the stack as a principal of it, none for "".
	dial := func(t *testing.T, principal string, opts ...kgo.Opt) *kgo.Client {
		cfg := env.Config
		cfg.Secure = principal != ""
		cl, err := kgo.NewClient(append(append(cfg.As(principal).Kafka(), kgo.RequestRetries(0)), opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	t.Run("a client without credentials is refused", func(t *testing.T) { accesstest.RefusesStrangers(t, dial) })
	t.Run("the payment principal cannot write an order", func(t *testing.T) {
		accesstest.RefusesForgedOrder(t, dial)
		var orders struct {
			Count int `json:"count"`
		}
		get(t, env.Shop.URL("order")+"/orders", &orders)
		if orders.Count != 1 {
			t.Fatalf("/orders count %d after the forgery, want 1", orders.Count)
		}
	})
	t.Run("a registry write without credentials gets 401", func(t *testing.T) {
		accesstest.RegistryRefusesStrangers(t, env.Stack.RegistryURL)
	})
}
