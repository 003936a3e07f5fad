package services_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// TestStalledStageSaysSo: the order service cannot read a payment while
// the registry is down (its schema is new to it), so it retries the same
// records. Past the bound, /healthz answers 503 with the partition and the
// reason, the metrics carry the stall, and the dashboard marks the
// partition; once the registry is back, all of it clears.
func TestStalledStageSaysSo(t *testing.T) {
	stack, _ := shoptest.Cluster(t)
	ctx := context.Background()
	target, _ := url.Parse(stack.RegistryURL)
	var down atomic.Bool
	proxy := httputil.NewSingleHostReverseProxy(target)
	registry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "registry down for the test", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer registry.Close()

	cat, err := schemas.Connect(ctx, registry.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := shoptest.Config(t, stack)
	cfg.RegistryURL, cfg.StallAfter = registry.URL, time.Second
	s := shoptest.Services(t, cfg, cat, shop.Options{Services: []string{"order", "analytics"}})

	// A payment in version 2 of the schema, which the order service has
	// never met; then the registry goes down.
	v2text, err := os.ReadFile("../schemas/evolution/payment_succeeded_v2.avsc")
	if err != nil {
		t.Fatal(err)
	}
	ss, err := schemas.RegisterText(ctx, cat.Registry(), schemas.Payments.Subject, string(v2text))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := avro.Parse(string(v2text))
	if err != nil {
		t.Fatal(err)
	}
	body, err := avro.Marshal(v2, map[string]any{"payment_id": "0b9a6c3e-7f1d-4c1e-9a55-2f7d1c3b8e01", "user_id": int64(42),
		"cart":        []map[string]any{{"name": "MacBook", "unit_price_cents": int64(199900), "quantity": 1}},
		"total_cents": int64(199900), "currency": "EUR", "paid_at": time.Now().UTC().Truncate(time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := &kgo.Record{Topic: schemas.Payments.Name, Key: []byte("42"), Value: append(binary.BigEndian.AppendUint32([]byte{0}, uint32(ss.ID)), body...)}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	where := fmt.Sprintf("payment-successful partition %d offset %d", rec.Partition, rec.Offset)

	order := s.URL("order")
	eventually(t, 20*time.Second, func() error {
		code, body := fetch(t, order+"/healthz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, where) || !strings.Contains(body, "registry") {
			return fmt.Errorf("/healthz = %d %s, want 503 naming %s and the registry", code, body, where)
		}
		if _, metrics := fetch(t, order+"/metrics"); !strings.Contains(metrics, fmt.Sprintf(`shop_stage_stalled_since_seconds{partition="%d",service="order",topic="payment-successful"}`, rec.Partition)) {
			return fmt.Errorf("no shop_stage_stalled_since_seconds for partition %d", rec.Partition)
		}
		if !dashboardStalled(t, s.URL("analytics"), rec.Partition) {
			return fmt.Errorf("the dashboard does not mark partition %d stalled", rec.Partition)
		}
		return nil
	})

	down.Store(false)
	eventually(t, 20*time.Second, func() error {
		if code, body := fetch(t, order+"/healthz"); code != http.StatusOK {
			return fmt.Errorf("/healthz = %d %s after the registry came back", code, body)
		}
		if dashboardStalled(t, s.URL("analytics"), rec.Partition) {
			return fmt.Errorf("the dashboard still marks partition %d stalled", rec.Partition)
		}
		return nil
	})
}

func fetch(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// dashboardStalled reports whether the dashboard marks partition p of the
// order service's input stalled.
func dashboardStalled(t *testing.T, analytics string, p int32) bool {
	_, body := fetch(t, analytics+"/analytics/dashboard")
	var d struct {
		Groups struct {
			Groups []struct {
				Group      string
				Partitions []struct {
					Topic        string
					Partition    int32
					StalledSince *time.Time `json:"stalled_since"`
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	for _, g := range d.Groups.Groups {
		for _, q := range g.Partitions {
			if g.Group == "order-service-group" && q.Topic == schemas.Payments.Name && q.Partition == p && q.StalledSince != nil {
				return true
			}
		}
	}
	return false
}
