// End-to-end tests of the shop: the embedded cluster and registry, the four
// services, and HTTP in and out, as a user drives them.
package services_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/poison/pills"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("POST %s: answer is not JSON: %v", url, err)
	}
	return resp.StatusCode, out
}

func get(t *testing.T, url string, into any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(into); err != nil {
		t.Fatal(err)
	}
}

// eventually polls check every 50 ms until it returns nil or within runs
// out.
func eventually(t *testing.T, within time.Duration, check func() error) {
	t.Helper()
	shoptest.Eventually(t, within, 50*time.Millisecond, check)
}

func TestPaymentBecomesOrderEmailAndAnalytics(t *testing.T) {
	env := shoptest.Start(t, shop.Options{}, nil)
	payURL := env.Shop.URL("payment") + "/payment"

	bodies := []string{
		`{"user_id": 42, "cart": [{"name": "MacBook", "price": 1999, "quantity": 1}]}`,
		`{"user_id": 7, "cart": [{"name": "Mouse", "price": 19.99, "quantity": 3}, {"name": "Pad", "price": 0.1, "quantity": 1}]}`,
		`{"user_id": 42, "cart": [{"name": "Cable", "price": 9.95, "quantity": 2}]}`,
	}
	paid := map[string]bool{}
	for _, b := range bodies {
		code, out := post(t, payURL, b)
		if code != http.StatusOK || out["status"] != "success" || out["payment_id"] == "" {
			t.Fatalf("POST /payment %s: %d %v", b, code, out)
		}
		paid[out["payment_id"].(string)] = true
	}
	const revenue = "2078.97" // 1999 + 3*19.99 + 0.10 + 2*9.95

	// Acceptance: within 2 s the views show them, revenue exact to the cent.
	eventually(t, 2*time.Second, func() error {
		var orders struct {
			Count  int `json:"count"`
			Orders []struct {
				OrderID   string      `json:"order_id"`
				PaymentID string      `json:"payment_id"`
				Total     json.Number `json:"total"`
			} `json:"orders"`
		}
		get(t, env.Shop.URL("order")+"/orders", &orders)
		if orders.Count != 3 || len(orders.Orders) != 3 {
			return fmt.Errorf("/orders count %d", orders.Count)
		}
		for _, o := range orders.Orders {
			if !paid[o.PaymentID] || o.OrderID != schemas.OrderID(o.PaymentID) {
				return fmt.Errorf("unexpected order %+v", o)
			}
		}
		var emails struct {
			Count  int `json:"count"`
			Emails []struct {
				OrderID string `json:"order_id"`
				To      string `json:"to"`
			} `json:"emails_sent"`
		}
		get(t, env.Shop.URL("email")+"/emails", &emails)
		if emails.Count != 3 || len(emails.Emails) != 3 {
			return fmt.Errorf("/emails count %d", emails.Count)
		}
		var a map[string]any
		get(t, env.Shop.URL("analytics")+"/analytics", &a)
		want := map[string]string{"total_payments": "3", "total_orders": "3", "total_emails": "3",
			"total_revenue": revenue, "unique_users": "2", "dlq_messages": "0"}
		for k, v := range want {
			if fmt.Sprint(a[k]) != v {
				return fmt.Errorf("/analytics %s = %v, want %s", k, a[k], v)
			}
		}
		var live map[string]any
		get(t, env.Shop.URL("analytics")+"/analytics/live", &live)
		if fmt.Sprint(live["total_revenue"]) != revenue || fmt.Sprint(live["payments_per_minute"]) != "3" {
			return fmt.Errorf("/analytics/live = %v", live)
		}
		return nil
	})

	var orders struct {
		Orders []any `json:"orders"`
	}
	get(t, env.Shop.URL("order")+"/orders?limit=1", &orders)
	if len(orders.Orders) != 1 {
		t.Fatalf("/orders?limit=1 gave %d orders", len(orders.Orders))
	}
	for _, name := range config.Services {
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			resp, err := http.Get(env.Shop.URL(name) + path)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s: %v %v", name, path, err, resp)
			}
			resp.Body.Close()
		}
	}
}

func TestTutorialBadPayloadsAreRefusedAndNothingReachesKafka(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"payment"}}, nil)
	for _, p := range pills.Tutorial() {
		code, out := post(t, env.Shop.URL("payment")+"/payment", string(p.Value))
		if code != http.StatusBadRequest || out["status"] != "error" || out["field"] != p.Field || out["error"] == "" {
			t.Errorf("%s: %d %v, want 400 naming %s", p.Name, code, out, p.Field)
		}
	}
	for _, b := range []string{
		`{"user_id": 1, "cart": [{"name": "x", "price": -5, "quantity": 1}]}`,
		`{"user_id": 1, "cart": [{"name": "x", "price": 5, "quantity": 0}]}`,
		`{"user_id": 1, "cart": []}`,
		`{"user_id": 0, "cart": [{"name": "x", "price": 5, "quantity": 1}]}`,
		`{"user_id": 1, "cart": [{"name": "x", "price": 0.001, "quantity": 1}]}`,
	} {
		if code, out := post(t, env.Shop.URL("payment")+"/payment", b); code != http.StatusBadRequest || out["field"] == "" {
			t.Errorf("%s: %d %v, want 400 with a field", b, code, out)
		}
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), schemas.Payments.Name)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset != 0 {
			t.Errorf("partition %d of %s holds %d records after only bad payments", o.Partition, o.Topic, o.Offset)
		}
	})
}

// TestAnalyticsRebuildsTheSameFiguresAfterARestart: analytics keeps no store;
// a new instance replays the committed log and must report the same numbers,
// dead letters included.
func TestAnalyticsRebuildsTheSameFiguresAfterARestart(t *testing.T) {
	env := shoptest.Start(t, shop.Options{}, nil)
	for i := 1; i <= 20; i++ {
		body := fmt.Sprintf(`{"user_id": %d, "cart": [{"name": "Lamp", "price": 12.34, "quantity": %d}]}`, i%6+1, i)
		if code, out := post(t, env.Shop.URL("payment")+"/payment", body); code != http.StatusOK {
			t.Fatalf("payment %d: %d %v", i, code, out)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.Payments.Name, Value: []byte(`{"user_id": 1}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	const revenue = "2591.40" // 12.34 * (1 + 2 + ... + 20)
	report := func(url string) map[string]any {
		var a map[string]any
		get(t, url+"/analytics", &a)
		return a
	}
	eventually(t, 5*time.Second, func() error {
		a := report(env.Shop.URL("analytics"))
		if fmt.Sprint(a["total_emails"]) != "20" || fmt.Sprint(a["dlq_messages"]) != "1" || fmt.Sprint(a["total_revenue"]) != revenue {
			return fmt.Errorf("analytics = %v", a)
		}
		return nil
	})
	before := report(env.Shop.URL("analytics"))

	cfg := env.Config
	cfg.InstanceID = "2"
	again, err := shop.Start(context.Background(), cfg, env.Catalog, shop.Options{Services: []string{"analytics"}})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Stop()
	eventually(t, 5*time.Second, func() error {
		after := report(again.URL("analytics"))
		for _, k := range []string{"total_payments", "total_orders", "total_emails", "total_revenue", "unique_users", "dlq_messages", "last_updated"} {
			if fmt.Sprint(after[k]) != fmt.Sprint(before[k]) {
				return fmt.Errorf("after a restart %s = %v, before %v", k, after[k], before[k])
			}
		}
		return nil
	})
}
