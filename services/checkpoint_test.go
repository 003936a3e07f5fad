package services_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/shoppers"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// TestViewsFromCheckpointsAgreeWithAFullReplay: the views checkpoint as
// they go. Restarted, they start from their checkpoints, read only the tail
// written since, and show exactly what views that replay the whole log
// show.
func TestViewsFromCheckpointsAgreeWithAFullReplay(t *testing.T) {
	env := shoptest.Start(t, shop.Options{}, func(cfg *config.Config) { cfg.CheckpointEvery = 100 * time.Millisecond })
	ctx := context.Background()
	cl, _ := shoptest.Clients(t, env.Stack)
	r := rand.New(rand.NewPCG(7, 7))
	send := func(n int) {
		t.Helper()
		recs := make([]*kgo.Record, n)
		for i := range recs {
			p := shoppers.Payment(r, 50)
			rec, err := schemas.Payments.Codec(env.Catalog).Record(&p)
			if err != nil {
				t.Fatal(err)
			}
			recs[i] = rec
		}
		recs = append(recs, &kgo.Record{Topic: schemas.Payments.Name, Key: []byte("9"), Value: []byte("poison")})
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	totals := func(url string, emails int) map[string]string {
		t.Helper()
		var a map[string]any
		eventually(t, 20*time.Second, func() error {
			a = nil
			get(t, url+"/analytics", &a)
			if fmt.Sprint(a["total_emails"]) != fmt.Sprint(emails) {
				return fmt.Errorf("%s: %v emails, want %d", url, a["total_emails"], emails)
			}
			return nil
		})
		out := map[string]string{}
		for _, k := range []string{"total_payments", "total_orders", "total_emails", "total_revenue", "unique_users", "users", "dlq_messages", "dlq_by_class", "last_updated"} {
			out[k] = fmt.Sprint(a[k])
		}
		return out
	}
	send(300)
	first := totals(env.Shop.URL("analytics"), 300)
	if err := env.Shop.Stop(); err != nil { // a graceful stop checkpoints what it holds
		t.Fatal(err)
	}
	send(200) // the tail, written while the services are down

	logs := new(shoptest.SyncBuffer)
	restarted := func(adjust func(*config.Config)) *shop.Shop {
		cfg := env.Config
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		adjust(&cfg)
		return shoptest.Services(t, cfg, env.Catalog, shop.Options{})
	}
	again := restarted(func(*config.Config) {})
	fromCheckpoint := totals(again.URL("analytics"), 500)
	restored := map[string]bool{}
	for _, line := range strings.Split(logs.String(), "\n") {
		var l struct {
			Service        string `json:"service"`
			FromCheckpoint bool   `json:"from_checkpoint"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.FromCheckpoint {
			restored[l.Service] = true
		}
	}
	for _, svc := range []string{"order", "email", "analytics"} {
		if !restored[svc] {
			t.Fatalf("%s did not start from a checkpoint (restored: %v):\n%s", svc, restored, logs.String())
		}
	}
	if fromCheckpoint["total_payments"] == first["total_payments"] {
		t.Fatalf("the restarted analytics shows no payment of the tail: %v", fromCheckpoint)
	}

	// The same orders and emails; the order they arrived in across
	// partitions is the only thing a replay may change.
	type list struct{ name, path, items, id string }
	lists := []list{{"order", "/orders", "orders", "order_id"}, {"email", "/emails", "emails_sent", "email_id"}}
	ids := func(url string, l list) (string, []string) {
		var v map[string]any
		get(t, url+l.path+"?limit=1000", &v)
		var out []string
		for _, item := range v[l.items].([]any) {
			out = append(out, fmt.Sprint(item.(map[string]any)[l.id]))
		}
		slices.Sort(out)
		return fmt.Sprint(v["count"]), out
	}
	counted := map[string][]string{}
	for _, l := range lists {
		n, got := ids(again.URL(l.name), l)
		if n != "500" {
			t.Errorf("%s from a checkpoint: %s items, want 500", l.path, n)
		}
		counted[l.name] = got
	}

	// The control: a second shop that keeps no checkpoints replays it all.
	// The first stops before, so that the replay's analytics holds every
	// partition of its group rather than asking the first for its share.
	if err := again.Stop(); err != nil {
		t.Fatal(err)
	}
	replay := restarted(func(cfg *config.Config) { cfg.InstanceID, cfg.NoCheckpoints = "replay", true })
	full := totals(replay.URL("analytics"), 500)
	for k, v := range full {
		if fromCheckpoint[k] != v {
			t.Errorf("%s: from a checkpoint %s, from the whole log %s", k, fromCheckpoint[k], v)
		}
	}
	for _, l := range lists {
		if m, got := ids(replay.URL(l.name), l); m != "500" || !slices.Equal(got, counted[l.name]) {
			t.Errorf("%s from the whole log: %s items; the same IDs as from a checkpoint: %v", l.path, m, slices.Equal(got, counted[l.name]))
		}
	}
}
