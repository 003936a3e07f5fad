package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/blackfriday-kafka/shop/scripts/latency"
	"github.com/blackfriday-kafka/shop/scripts/leanhttp"
)

// ingestWarmup runs before the measured time: connections open.
const ingestWarmup = time.Second

// ingestName is the figure name of an ingest figure at clients clients:
// ingest_rps for 64, the headline level, ingest_256_rps for 256.
func ingestName(clients int, figure string) string {
	if clients == 64 {
		return "ingest_" + figure
	}
	return fmt.Sprintf("ingest_%d_%s", clients, figure)
}

// settle waits until the services are idle before a measure: the email
// delivery loops send the emails of the last one over SMTP after they are
// committed, and would take CPU from the next.
func settle(ctx context.Context, f *fleet, p *progress, what string) {
	if d := f.settle(ctx); d > 1500*time.Millisecond {
		p.Printf("%s: the services went idle after %s", what, d.Round(100*time.Millisecond))
	}
}

// runIngest measures each level of o.Clients in turn.
func runIngest(ctx context.Context, o Options, f *fleet, paymentURL string, w *watcher, p *progress, res *Results) error {
	for _, clients := range o.Clients {
		if err := runIngestLevel(ctx, o, f, clients, paymentURL, w, p, res); err != nil {
			return err
		}
	}
	return nil
}

// runIngestLevel posts payments from clients clients, each sending its
// next payment as soon as the last one is answered, for o.IngestFor. Only
// 200s count: the payment service answers 200 only after Kafka
// acknowledged the record with acks=all. Then it waits until the pipeline
// has an email for every payment accepted, so that the next level or
// section starts idle.
func runIngestLevel(ctx context.Context, o Options, f *fleet, clients int, paymentURL string, w *watcher, p *progress, res *Results) error {
	settle(ctx, f, p, fmt.Sprintf("ingest %d", clients))
	p.Printf("ingest: POST /payment from %d clients (%s HTTP client) for %s (after %s of warm-up); load average %s", clients, o.HTTPClient, o.IngestFor, ingestWarmup, loadAverage())
	// Each client posts through a connection of its own: the lean one, or
	// net/http's client with -http std.
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	// newClient is a client of its own for each of the clients.
	var newClient func() func(ctx context.Context, i int) (int, error)
	if o.HTTPClient == "std" {
		pay := newPayer(paymentURL, clients)
		closers = append(closers, pay.close)
		newClient = func() func(ctx context.Context, i int) (int, error) {
			return func(ctx context.Context, i int) (int, error) { return pay.pay(ctx, i, nil) }
		}
	} else {
		lean, err := leanhttp.NewClient(paymentURL)
		if err != nil {
			return err
		}
		var requests [][]byte
		for _, body := range paymentBodies() {
			requests = append(requests, lean.AppendPost(nil, "/payment", body))
		}
		newClient = func() func(ctx context.Context, i int) (int, error) {
			c := lean.Conn()
			closers = append(closers, c.Close)
			return func(ctx context.Context, i int) (int, error) {
				a, err := c.Do(ctx, requests[i%len(requests)], time.Now().Add(30*time.Second))
				return a.Status, err
			}
		}
	}
	emailsBefore := w.count()

	cpuBefore := f.cpuByService()
	recsBefore, batchesBefore := producerCounts(paymentURL)
	begin := time.Now()
	from, until := begin.Add(ingestWarmup), begin.Add(ingestWarmup+o.IngestFor)
	type tally struct {
		ok, okAll, failed int
		latencies         []time.Duration
	}
	tallies := make([]tally, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		pay := newClient()
		go func() {
			defer wg.Done()
			t := &tallies[c]
			for i := c; ; i += clients {
				t0 := time.Now()
				if !t0.Before(until) || ctx.Err() != nil {
					return
				}
				status, err := pay(ctx, i)
				t1 := time.Now()
				if err != nil || status != http.StatusOK {
					t.failed++
					continue
				}
				t.okAll++
				if !t0.Before(from) && !t1.After(until) {
					t.ok++
					t.latencies = append(t.latencies, t1.Sub(t0))
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-tick.C:
			p.Printf("ingest %d: %.0fs, %d emails so far", clients, time.Since(begin).Seconds(), w.count()-emailsBefore)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	var ok, okAll, failed int
	var latencies []time.Duration
	for _, t := range tallies {
		ok, okAll, failed = ok+t.ok, okAll+t.okAll, failed+t.failed
		latencies = append(latencies, t.latencies...)
	}
	p50, p99 := latency.Percentile(latencies, 50), latency.Percentile(latencies, 99)
	recs, batches := producerCounts(paymentURL)
	if batches > batchesBefore {
		p.Printf("ingest %d: the payment service's producer wrote %.0f records in %.0f batches, %.1f records per batch (%.0f batches/s)",
			clients, recs-recsBefore, batches-batchesBefore, (recs-recsBefore)/(batches-batchesBefore), (batches-batchesBefore)/time.Since(begin).Seconds())
	}
	p.Printf("ingest %d: %d payments acknowledged in %s: %s/s, p50 %sms, p99 %sms; %d not accepted; load average %s",
		clients, ok, o.IngestFor, rate(ok, o.IngestFor), ms(p50), ms(p99), failed, loadAverage())
	res.Add(ingestName(clients, "rps"), rate(ok, o.IngestFor))
	res.Add(ingestName(clients, "p50_ms"), ms(p50))
	res.Add(ingestName(clients, "p99_ms"), ms(p99))
	res.Add(ingestName(clients, "errors"), strconv.Itoa(failed))

	caughtUp := time.Now()
	if err := w.waitCount(ctx, emailsBefore+okAll, 60*time.Second, func(done int) {
		p.Printf("ingest %d: the pipeline catches up: %d/%d emails", clients, done-emailsBefore, okAll)
	}); err != nil {
		return err
	}
	p.Printf("ingest %d: every accepted payment has its email, %s after the load stopped; CPU per payment, from the first to the last email: %s",
		clients, time.Since(caughtUp).Round(100*time.Millisecond), cpuSpent(cpuBefore, f.cpuByService(), okAll))
	return nil
}
