package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/blackfriday-kafka/shop/scripts/latency"
	"github.com/blackfriday-kafka/shop/scripts/leanhttp"
	periodic "github.com/blackfriday-kafka/shop/scripts/progress" // "progress" is this package's printer
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
	newClient, closeAll, err := ingestClients(o, paymentURL, clients)
	if err != nil {
		return err
	}
	defer closeAll()
	emailsBefore := w.count()
	cpuBefore := f.cpuByService()
	recsBefore, batchesBefore := producerCounts(paymentURL)
	begin := time.Now()
	stop := periodic.Every(2*time.Second, func() {
		p.Printf("ingest %d: %.0fs, %d emails so far", clients, time.Since(begin).Seconds(), w.count()-emailsBefore)
	})
	t := closedLoop(ctx, clients, newClient, begin.Add(ingestWarmup), begin.Add(ingestWarmup+o.IngestFor))
	stop()
	if err := ctx.Err(); err != nil {
		return err
	}

	slices.Sort(t.latencies)
	p50, p99 := latency.Sorted(t.latencies, 50), latency.Sorted(t.latencies, 99)
	if recs, batches := producerCounts(paymentURL); batches > batchesBefore {
		p.Printf("ingest %d: the payment service's producer wrote %.0f records in %.0f batches, %.1f records per batch (%.0f batches/s)",
			clients, recs-recsBefore, batches-batchesBefore, (recs-recsBefore)/(batches-batchesBefore), (batches-batchesBefore)/time.Since(begin).Seconds())
	}
	p.Printf("ingest %d: %d payments acknowledged in %s: %s/s, p50 %sms, p99 %sms; %d not accepted; load average %s",
		clients, t.ok, o.IngestFor, rate(t.ok, o.IngestFor), ms(p50), ms(p99), t.failed, loadAverage())
	res.Add(ingestName(clients, "rps"), rate(t.ok, o.IngestFor))
	res.Add(ingestName(clients, "p50_ms"), ms(p50))
	res.Add(ingestName(clients, "p99_ms"), ms(p99))
	res.Add(ingestName(clients, "errors"), strconv.Itoa(t.failed))

	caughtUp := time.Now()
	if err := w.waitCount(ctx, emailsBefore+t.okAll, 60*time.Second, func(done int) {
		p.Printf("ingest %d: the pipeline catches up: %d/%d emails", clients, done-emailsBefore, t.okAll)
	}); err != nil {
		return err
	}
	p.Printf("ingest %d: every accepted payment has its email, %s after the load stopped; CPU per payment, from the first to the last email: %s",
		clients, time.Since(caughtUp).Round(100*time.Millisecond), cpuSpent(cpuBefore, f.cpuByService(), t.okAll))
	return nil
}

// payFunc posts payment i of the prepared bodies and returns the status.
type payFunc func(ctx context.Context, i int) (int, error)

// ingestClients makes, for each of clients, a client of its own through
// newClient: a lean connection each, or net/http's client with -http std.
// closeAll closes them all.
func ingestClients(o Options, paymentURL string, clients int) (newClient func() payFunc, closeAll func(), err error) {
	var closers []func()
	closeAll = func() {
		for _, c := range closers {
			c()
		}
	}
	if o.HTTPClient == "std" {
		pay := newPayer(paymentURL, clients)
		closers = append(closers, pay.close)
		return func() payFunc {
			return func(ctx context.Context, i int) (int, error) { return pay.pay(ctx, i, nil) }
		}, closeAll, nil
	}
	lean, err := leanhttp.NewClient(paymentURL)
	if err != nil {
		return nil, nil, err
	}
	var requests [][]byte
	for _, body := range paymentBodies() {
		requests = append(requests, lean.AppendPost(nil, "/payment", body))
	}
	return func() payFunc {
		c := lean.Conn()
		closers = append(closers, c.Close)
		return func(ctx context.Context, i int) (int, error) {
			a, err := c.Do(ctx, requests[i%len(requests)], time.Now().Add(30*time.Second))
			return a.Status, err
		}
	}, closeAll, nil
}

// ingestTally is what a closed loop's clients got: the 200s answered
// between from and until (ok, with their latencies), all the 200s
// (okAll), and the rest (failed).
type ingestTally struct {
	ok, okAll, failed int
	latencies         []time.Duration
}

// closedLoop runs clients clients, each posting its next payment once the
// last is answered, until until; only the 200s between from and until
// count as ok.
func closedLoop(ctx context.Context, clients int, newClient func() payFunc, from, until time.Time) ingestTally {
	tallies := make([]ingestTally, clients)
	var wg sync.WaitGroup
	for c := range clients {
		pay := newClient()
		wg.Go(func() {
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
		})
	}
	wg.Wait()
	var all ingestTally
	for _, t := range tallies {
		all.ok, all.okAll, all.failed = all.ok+t.ok, all.okAll+t.okAll, all.failed+t.failed
		all.latencies = append(all.latencies, t.latencies...)
	}
	return all
}
