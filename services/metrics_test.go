package services_test

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
	"github.com/blackfriday-kafka/shop/txn/metrics"
)

// scrape reads a /metrics endpoint as Prometheus does, and fails the test
// if the text format does not parse.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET %s: %d %s, want 200 text/plain", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	fams, err := metrics.Parse(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: not Prometheus text format: %v", url, err)
	}
	return fams
}

// sample is metrics.Sum: the series of a family whose labels include want.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	return metrics.Sum(fams, name, want)
}

// series is one expectation on a service's /metrics: the sum of the series
// named name with labels moves by at least delta (exactly delta if exact).
type series struct {
	service, name string
	labels        map[string]string
	delta         float64
	exact         bool
}

func (s series) String() string {
	keys := slices.Sorted(maps.Keys(s.labels))
	var ls []string
	for _, k := range keys {
		ls = append(ls, k+"="+s.labels[k])
	}
	return s.service + " " + s.name + "{" + strings.Join(ls, ",") + "}"
}

// TestMetricsMoveAfterThreePayments is the acceptance check: after three
// payments, the business series move on every service's /metrics, the Kafka
// client metrics are there, and every endpoint parses as Prometheus text.
func TestMetricsMoveAfterThreePayments(t *testing.T) {
	env := shoptest.Start(t, shop.Options{}, nil)
	scrapeAll := func() map[string]map[string]*dto.MetricFamily {
		all := map[string]map[string]*dto.MetricFamily{}
		for _, svc := range config.Services {
			all[svc] = scrape(t, env.Shop.URL(svc)+"/metrics")
		}
		return all
	}
	before := scrapeAll()

	for _, b := range []string{
		`{"user_id": 42, "cart": [{"name": "MacBook", "price": 1999, "quantity": 1}]}`,
		`{"user_id": 7, "cart": [{"name": "Mouse", "price": 19.99, "quantity": 3}, {"name": "Pad", "price": 0.1, "quantity": 1}]}`,
		`{"user_id": 42, "cart": [{"name": "Cable", "price": 9.95, "quantity": 2}]}`,
	} {
		if code, out := post(t, env.Shop.URL("payment")+"/payment", b); code != http.StatusOK {
			t.Fatalf("POST /payment: %d %v", code, out)
		}
	}
	if code, _ := post(t, env.Shop.URL("payment")+"/payment", `{"user_id": 0, "cart": []}`); code != http.StatusBadRequest {
		t.Fatalf("invalid payment: %d, want 400", code)
	}

	committed := map[string]string{"outcome": "committed"}
	want := []series{
		{service: "payment", name: "shop_payments_accepted_total", delta: 3, exact: true},
		{service: "payment", name: "shop_payments_rejected_total", labels: map[string]string{"reason": "invalid"}, delta: 1, exact: true},
		{service: "payment", name: "shop_payment_ack_seconds", delta: 3, exact: true},
		{service: "payment", name: "shop_kafka_produce_records_total", labels: map[string]string{"client": "producer", "topic": "payment-successful"}, delta: 3},
		{service: "order", name: "shop_orders_created_total", delta: 3, exact: true},
		{service: "order", name: "shop_records_consumed_total", delta: 3, exact: true},
		{service: "order", name: "shop_transactions_committed_total", delta: 1},
		{service: "order", name: "shop_transaction_records", labels: committed, delta: 1},
		{service: "order", name: "shop_transform_seconds", labels: map[string]string{"outcome": "ok"}, delta: 3, exact: true},
		{service: "order", name: "shop_kafka_produce_records_total", labels: map[string]string{"client": "engine", "topic": "order-created"}, delta: 3},
		{service: "order", name: "shop_kafka_fetch_records_total", labels: map[string]string{"client": "engine", "topic": "payment-successful"}, delta: 3},
		{service: "email", name: "shop_emails_sent_total", delta: 3, exact: true},
		{service: "email", name: "shop_transactions_committed_total", delta: 1},
		{service: "email", name: "shop_transaction_seconds", labels: committed, delta: 1},
		{service: "email", name: "shop_kafka_fetch_records_total", labels: map[string]string{"client": "view", "topic": "email-sent"}, delta: 3},
		{service: "analytics", name: "shop_analytics_events_total", labels: map[string]string{"topic": "payment-successful"}, delta: 3, exact: true},
		{service: "analytics", name: "shop_analytics_events_total", labels: map[string]string{"topic": "order-created"}, delta: 3, exact: true},
		{service: "analytics", name: "shop_analytics_events_total", labels: map[string]string{"topic": "email-sent"}, delta: 3, exact: true},
		{service: "analytics", name: "shop_analytics_revenue_euros_total", delta: 2078.97, exact: true},
		{service: "analytics", name: "shop_analytics_unique_users", delta: 2, exact: true},
	}
	eventually(t, 15*time.Second, func() error {
		after := scrapeAll()
		for _, s := range want {
			was, _ := sample(before[s.service], s.name, s.labels)
			now, ok := sample(after[s.service], s.name, s.labels)
			if !ok {
				return fmt.Errorf("%s: no such series", s)
			}
			moved := now - was
			if moved < s.delta-0.001 || (s.exact && moved > s.delta+0.001) {
				return fmt.Errorf("%s moved by %v, want %v", s, moved, s.delta)
			}
		}
		// Lag: each stage reports the partitions it holds, all of them
		// with a single instance.
		for svc, group := range map[string]string{"order": "order-service-group", "email": "email-service-group"} {
			if n := len(after[svc]["shop_consumer_lag"].GetMetric()); n != 3 {
				return fmt.Errorf("%s: %d shop_consumer_lag series for %s, want one per partition", svc, n, group)
			}
		}
		for _, class := range []string{"validation", "bad-magic-byte"} {
			if _, ok := sample(after["order"], "shop_dead_letters_total", map[string]string{"error_class": class}); !ok {
				return fmt.Errorf("order: no shop_dead_letters_total series for %s", class)
			}
		}
		return nil
	})
}
