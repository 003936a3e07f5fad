package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/shop"
)

// collect reads the final state of the output topics, once the fleet has
// stopped and nothing writes any more, and replays it through analytics.
func collect(ctx context.Context, cat *schemas.Catalog, o Options, from map[string]map[int32]kgo.Offset, accepted map[string]int64) (Ledger, error) {
	l := Ledger{Accepted: accepted}
	err := readTopic(ctx, o, schemas.Orders.Name, kgo.ReadCommitted(), func(r *kgo.Record) error {
		ord, err := schemas.Orders.Codec(cat).Decode(ctx, r.Value)
		if err != nil {
			return fmt.Errorf("order-created %d/%d: %w", r.Partition, r.Offset, err)
		}
		l.TopicOrders++
		l.TopicRevenue += ord.TotalCents
		if r.Offset >= from[r.Topic][r.Partition].EpochOffset().Offset {
			l.Orders = append(l.Orders, OrderSeen{OrderID: ord.OrderID, PaymentID: ord.PaymentID, TotalCents: ord.TotalCents,
				Payment: o.paymentOf(ord)})
		}
		return nil
	})
	if err != nil {
		return l, err
	}
	err = readTopic(ctx, o, schemas.Emails.Name, kgo.ReadCommitted(), func(r *kgo.Record) error {
		if r.Offset < from[r.Topic][r.Partition].EpochOffset().Offset {
			return nil
		}
		e, err := schemas.Emails.Codec(cat).Decode(ctx, r.Value)
		if err != nil {
			return fmt.Errorf("email-sent %d/%d: %w", r.Partition, r.Offset, err)
		}
		l.Emails = append(l.Emails, EmailSeen{EmailID: e.EmailID, OrderID: e.OrderID})
		return nil
	})
	if err != nil {
		return l, err
	}
	for topic, count := range map[string]*int{schemas.Orders.Name: &l.OrdersUncommitted, schemas.Emails.Name: &l.EmailsUncommitted} {
		if err := readTopic(ctx, o, topic, kgo.ReadUncommitted(), func(r *kgo.Record) error {
			if r.Offset >= from[r.Topic][r.Partition].EpochOffset().Offset {
				*count++
			}
			return nil
		}); err != nil {
			return l, err
		}
	}
	return l, replayAnalytics(ctx, cat, o, &l)
}

// readTopic reads a whole topic. Nothing writes to it any more, so an idle
// two seconds means the end.
func readTopic(ctx context.Context, o Options, topic string, iso kgo.IsolationLevel, each func(*kgo.Record) error) error {
	recs, err := infra.ReadTopic(ctx, o.Brokers, topic, iso, 2*time.Second, o.Connect...)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := each(r); err != nil {
			return err
		}
	}
	return nil
}

// replayAnalytics starts a fresh analytics service without checkpoints, so
// that it rebuilds its figures from the whole log, and records what it
// reports.
func replayAnalytics(ctx context.Context, cat *schemas.Catalog, o Options, l *Ledger) error {
	cfg := config.Config{Brokers: o.Brokers, RegistryURL: o.RegistryURL, Addr: "127.0.0.1:0", InstanceID: "chaos", Secure: o.Secure, NoCheckpoints: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s, err := shop.Start(ctx, cfg, cat, shop.Options{Services: []string{"analytics"}})
	if err != nil {
		return err
	}
	defer s.Stop()
	var report struct {
		TotalOrders  int64       `json:"total_orders"`
		TotalRevenue json.Number `json:"total_revenue"`
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get(s.URL("analytics") + "/analytics")
		if err != nil {
			continue
		}
		dec := json.NewDecoder(resp.Body)
		dec.UseNumber()
		err = dec.Decode(&report)
		resp.Body.Close()
		if err == nil && report.TotalOrders >= l.TopicOrders {
			break
		}
	}
	euros, err := schemas.ParseEuros(report.TotalRevenue.String())
	if err != nil {
		return fmt.Errorf("analytics total_revenue %q: %w", report.TotalRevenue, err)
	}
	l.AnalyticsOrders, l.AnalyticsRevenue, l.AnalyticsChecked = report.TotalOrders, int64(euros), true
	return nil
}
