package services_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// logLines are the JSON lines of logs, one map each.
func logLines(t *testing.T, logs *shoptest.SyncBuffer) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", sc.Text(), err)
		}
		out = append(out, line)
	}
	return out
}

// TestRecordLinesCarryWhereAndWhat: every log line says which service and
// instance wrote it, and every line about a record says where the record is
// (topic, partition, offset) and which business object it is about, so that
// a log pipeline can follow one payment through the shop.
func TestRecordLinesCarryWhereAndWhat(t *testing.T) {
	logs := new(shoptest.SyncBuffer)
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	env := shoptest.Start(t, shop.Options{}, func(cfg *config.Config) { cfg.Logger = log })

	code, out := post(t, env.Shop.URL("payment")+"/payment", `{"user_id": 42, "cart": [{"name": "MacBook", "price": 1999, "quantity": 1}]}`)
	if code != http.StatusOK {
		t.Fatalf("POST /payment: %d %v", code, out)
	}
	paymentID := out["payment_id"].(string)
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	poison := &kgo.Record{Topic: schemas.Payments.Name, Key: []byte("42"), Value: []byte(`{"user_id": 42}`)}
	if err := cl.ProduceSync(context.Background(), poison).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// The messages that must appear, each from its service, about a record.
	want := map[string]string{
		"payment accepted":                       "payment",
		"payment received":                       "order",
		"poison record to the dead letter queue": "order",
		"order received":                         "email",
		"payment counted":                        "analytics",
		"order counted":                          "analytics",
		"email counted":                          "analytics",
		"dead letter counted":                    "analytics",
	}
	ids := []string{"payment_id", "order_id", "email_id", "key"}
	eventually(t, 10*time.Second, func() error {
		seen := map[string]bool{}
		for _, line := range logLines(t, logs) {
			for _, k := range []string{"service", "instance"} {
				if line[k] == nil || line[k] == "" {
					t.Fatalf("line without %s: %v", k, line)
				}
			}
			if _, ok := line["offset"]; !ok {
				continue // not about one record
			}
			for _, k := range []string{"topic", "partition"} {
				if line[k] == nil || line[k] == "" {
					t.Fatalf("record line without %s: %v", k, line)
				}
			}
			if !slices.ContainsFunc(ids, func(k string) bool { return line[k] != nil && line[k] != "" }) {
				t.Fatalf("record line without a business ID (%v): %v", ids, line)
			}
			msg, _ := line["msg"].(string)
			if svc, ok := want[msg]; ok {
				if line["service"] != svc {
					t.Fatalf("%q logged by service %v, want %s", msg, line["service"], svc)
				}
				seen[msg] = true
			}
			if msg == "payment accepted" && line["payment_id"] != paymentID {
				t.Fatalf("payment accepted line names payment %v, want %s", line["payment_id"], paymentID)
			}
		}
		for msg := range want {
			if !seen[msg] {
				return fmt.Errorf("no %q line yet", msg)
			}
		}
		return nil
	})
}
