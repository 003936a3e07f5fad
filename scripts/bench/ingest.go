package main

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// ingestWarmup runs before the measured time: connections open.
const ingestWarmup = time.Second

// runIngest posts payments from o.Concurrency clients, each sending its next
// payment as soon as the last one is answered, for o.IngestFor. Only 200s
// count: the payment service answers 200 only after Kafka acknowledged the
// record with acks=all. Then it waits until the pipeline has an email for
// every payment accepted, so that the next section starts idle.
func runIngest(ctx context.Context, o Options, paymentURL string, w *watcher, p *progress, res *Results) error {
	p.Printf("ingest: POST /payment from %d clients for %s (after %s of warm-up)", o.Concurrency, o.IngestFor, ingestWarmup)
	pay := newPayer(paymentURL, o.Concurrency)
	defer pay.close()
	emailsBefore := w.count()

	begin := time.Now()
	from, until := begin.Add(ingestWarmup), begin.Add(ingestWarmup+o.IngestFor)
	type tally struct {
		ok, okAll, failed int
		latencies         []time.Duration
	}
	tallies := make([]tally, o.Concurrency)
	var wg sync.WaitGroup
	for c := range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := &tallies[c]
			for i := c; ; i += o.Concurrency {
				t0 := time.Now()
				if !t0.Before(until) || ctx.Err() != nil {
					return
				}
				status, err := pay.pay(ctx, i, nil)
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
			p.Printf("ingest: %.0fs, %d emails so far", time.Since(begin).Seconds(), w.count()-emailsBefore)
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
	p50, p99 := Percentile(latencies, 50), Percentile(latencies, 99)
	p.Printf("ingest: %d payments acknowledged in %s: %s/s, p50 %sms, p99 %sms; %d not accepted",
		ok, o.IngestFor, rate(ok, o.IngestFor), ms(p50), ms(p99), failed)
	res.Add("ingest_rps", rate(ok, o.IngestFor))
	res.Add("ingest_p50_ms", ms(p50))
	res.Add("ingest_p99_ms", ms(p99))
	res.Add("ingest_errors", itoa(failed))

	caughtUp := time.Now()
	if err := w.waitCount(ctx, emailsBefore+okAll, 60*time.Second, func(done int) {
		p.Printf("ingest: the pipeline catches up: %d/%d emails", done-emailsBefore, okAll)
	}); err != nil {
		return err
	}
	p.Printf("ingest: every accepted payment has its email, %s after the load stopped", time.Since(caughtUp).Round(100*time.Millisecond))
	return nil
}
