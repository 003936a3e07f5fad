package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/shoppers"
)

// runDrain replays the tutorial's flood (--extreme is 10,000 payments): for
// each PROCESSING_DELAY and each count of order instances it writes the
// payments straight to payment-successful as fast as Kafka takes them, and
// times how long until every one has its email committed on email-sent.
func runDrain(ctx context.Context, o Options, cat *schemas.Catalog, f *fleet, w *watcher, p *progress, res *Results) error {
	producer, err := kgo.NewClient(kgo.SeedBrokers(o.Brokers...), kgo.RecordDeliveryTimeout(time.Minute))
	if err != nil {
		return err
	}
	defer producer.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, delay := range o.Delays {
		for _, n := range o.Instances {
			name := fmt.Sprintf("drain_%dx%s", n, delayName(delay))
			if err := f.startOrders(ctx, n, delay); err != nil {
				return err
			}
			f.settle(ctx)
			p.Printf("%s: %d payments straight to Kafka, %d order instance(s), PROCESSING_DELAY=%s", name, o.Flood, n, delay)
			orderIDs := make([]string, o.Flood)
			var failed kgo.FirstErrPromise
			start := time.Now()
			for i := range orderIDs {
				pay := shoppers.Payment(rng, 10_000)
				orderIDs[i] = schemas.OrderID(pay.PaymentID)
				r, err := schemas.Payments.Codec(cat).Record(&pay)
				if err != nil {
					return err
				}
				producer.Produce(ctx, r, failed.Promise())
			}
			if err := producer.Flush(ctx); err != nil {
				return err
			}
			if err := failed.Err(); err != nil {
				return fmt.Errorf("flood: %w", err)
			}
			written := time.Since(start)
			p.Printf("%s: flood written in %s", name, written.Round(time.Millisecond))
			last, err := w.waitAll(ctx, orderIDs, 60*time.Second, func(done int) {
				p.Printf("%s: %d/%d emails, %s/s", name, done, len(orderIDs), rate(done, time.Since(start)))
			})
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			took := last.Sub(start)
			p.Printf("%s: drained in %.1fs: %s payments/s through to email-sent", name, took.Seconds(), rate(o.Flood, took))
			res.Add(name+"_s", fmt.Sprintf("%.1f", took.Seconds()))
			res.Add(name+"_rps", rate(o.Flood, took))
		}
	}
	return nil
}

// delayName is a PROCESSING_DELAY as figure names spell it: 0ms, 10ms, 1s.
func delayName(d time.Duration) string {
	if d == 0 {
		return "0ms"
	}
	return d.String()
}
