package main

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/latency"
	"github.com/blackfriday-kafka/shop/scripts/pace"
	"github.com/blackfriday-kafka/shop/services/email"
)

// e2eWarmup is left out of the latencies: connections open, batches settle.
const e2eWarmup = 2 * time.Second

// e2eName is the figure name of an e2e figure at rate payments/s:
// e2e_p99_ms for 1,000/s, the headline rate, e2e_100_p99_ms for 100/s.
func e2eName(rate int, figure string) string {
	if rate == 1000 {
		return "e2e_" + figure
	}
	return fmt.Sprintf("e2e_%d_%s", rate, figure)
}

// runE2E measures each rate of o.Rates in turn.
func runE2E(ctx context.Context, o Options, f *fleet, paymentURL string, w *watcher, p *progress, res *Results) error {
	for i, r := range o.Rates {
		settle(ctx, f, p, fmt.Sprintf("e2e %d/s", r))
		if i == 0 {
			// What the machine spends with the shop idle: its
			// consumers' empty fetches, the brokers' own work.
			before, at := machineTicks(), time.Now()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Second):
			}
			busy := busyPercent(machineTicks()-before, time.Since(at))
			p.Printf("e2e: with the shop idle, the machine is %s%% busy", busy)
			res.Add("e2e_idle_busy_pct", busy)
		}
		if err := runE2ERate(ctx, o, r, f, paymentURL, w, p, res); err != nil {
			return err
		}
	}
	return nil
}

// runE2ERate posts payments at a steady rate and measures, for each
// accepted payment, the time from its record's timestamp on
// payment-successful to the moment its email on email-sent is readable
// with read_committed, that is committed. Both clocks are this machine's.
func runE2ERate(ctx context.Context, o Options, paymentRate int, f *fleet, paymentURL string, w *watcher, p *progress, res *Results) error {
	n := int(float64(paymentRate) * o.E2EFor.Seconds())
	p.Printf("e2e: %d payments/s over HTTP for %s (%d payments), the first %s not counted; load average %s", paymentRate, o.E2EFor, n, e2eWarmup, loadAverage())
	times, err := newRecordTimes(ctx, o.Brokers, schemas.Payments.Name)
	if err != nil {
		return err
	}
	defer times.close()
	cpuBefore := f.cpuByService()
	run, err := postAtRate(ctx, paymentURL, paymentRate, n, w, p)
	if err != nil {
		return err
	}
	orderIDs := run.orderIDs()
	if _, err := w.waitAll(ctx, orderIDs, 60*time.Second, func(done int) {
		p.Printf("e2e: %d/%d emails", done, len(orderIDs))
	}); err != nil {
		return err
	}
	cpuAfter, took := f.cpuByService(), time.Since(run.start)
	inbox, err := waitInbox(ctx, f.sink, orderIDs, p)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		// The commit figures stand; the inbox ones would leave out
		// the slowest emails.
		p.Printf("e2e %d/s: %v; no inbox figures", paymentRate, err)
		inbox = func(string) (time.Time, bool) { return time.Time{}, false }
	}
	lat, err := run.latencies(times, w, inbox)
	if err != nil {
		return err
	}
	// Each sample is sorted once, for all its figures.
	slices.Sort(lat.committed)
	slices.Sort(lat.produced)
	slices.Sort(lat.delivered)
	c50, c99, cMax := ms(latency.Sorted(lat.committed, 50)), ms(latency.Sorted(lat.committed, 99)), ms(latency.Sorted(lat.committed, 100))
	prod50, prod99 := ms(latency.Sorted(lat.produced, 50)), ms(latency.Sorted(lat.produced, 99))
	p.Printf("e2e %d/s: %d payments in %s (%s/s), %d failed; payment to email committed p50 %sms p99 %sms max %sms; to email produced p50 %sms p99 %sms; load average %s",
		paymentRate, len(orderIDs), run.took.Round(time.Millisecond), rate(len(orderIDs), run.took), run.failed,
		c50, c99, cMax, prod50, prod99, loadAverage())
	res.Add(e2eName(paymentRate, "rate"), rate(len(orderIDs), run.took))
	res.Add(e2eName(paymentRate, "p50_ms"), c50)
	res.Add(e2eName(paymentRate, "p99_ms"), c99)
	res.Add(e2eName(paymentRate, "produced_p50_ms"), prod50)
	res.Add(e2eName(paymentRate, "produced_p99_ms"), prod99)
	if len(lat.delivered) > 0 {
		in50, in99 := ms(latency.Sorted(lat.delivered, 50)), ms(latency.Sorted(lat.delivered, 99))
		ids, again := f.sink.delivered()
		p.Printf("e2e %d/s: payment to email in the mail server's hands p50 %sms p99 %sms (%d messages so far, %d of them again)",
			paymentRate, in50, in99, ids, again)
		res.Add(e2eName(paymentRate, "inbox_p50_ms"), in50)
		res.Add(e2eName(paymentRate, "inbox_p99_ms"), in99)
	}
	busy := busyPercent(cpuAfter["machine"]-cpuBefore["machine"], took)
	p.Printf("e2e %d/s: the machine was %s%% busy; CPU per payment: %s", paymentRate, busy, cpuSpent(cpuBefore, cpuAfter, len(orderIDs)))
	res.Add(e2eName(paymentRate, "busy_pct"), busy)
	return nil
}

// e2eRun is the payments of an e2e run, as their clients saw them.
type e2eRun struct {
	start  time.Time
	took   time.Duration // to send them all
	failed int
	sent   []e2eSent
}

type e2eSent struct {
	ok     bool
	at     time.Time
	answer accepted
}

// postAtRate posts n payments at paymentRate a second, each in a goroutine
// of its own, at most 2,048 at once.
func postAtRate(ctx context.Context, paymentURL string, paymentRate, n int, w *watcher, p *progress) (*e2eRun, error) {
	pay := newPayer(paymentURL, 1024)
	defer pay.close()
	run := &e2eRun{sent: make([]e2eSent, n), start: time.Now()}
	var (
		wg       sync.WaitGroup
		inflight = make(chan struct{}, 2048)
		failed   atomic.Int64
	)
	lastReport := run.start
	for i := range n {
		if err := pace.Wait(ctx, run.start, i, paymentRate, time.Second); err != nil {
			return nil, err
		}
		inflight <- struct{}{}
		wg.Go(func() {
			defer func() { <-inflight }()
			s := e2eSent{at: time.Now()}
			status, err := pay.pay(ctx, i, &s.answer)
			s.ok = err == nil && status == http.StatusOK
			if !s.ok {
				failed.Add(1)
			}
			run.sent[i] = s
		})
		if now := time.Now(); now.Sub(lastReport) >= 2*time.Second {
			p.Printf("e2e: sent %d/%d, %d emails so far", i+1, n, w.count())
			lastReport = now
		}
	}
	wg.Wait()
	run.took, run.failed = time.Since(run.start), int(failed.Load())
	return run, nil
}

// orderIDs are the orders of the payments accepted.
func (r *e2eRun) orderIDs() []string {
	var ids []string
	for _, s := range r.sent {
		if s.ok {
			ids = append(ids, schemas.OrderID(s.answer.PaymentID))
		}
	}
	return ids
}

// e2eLatencies are, for each payment accepted after the warm-up, the time
// from its record's timestamp to its email committed, produced and (if
// known) in the mail server's hands.
type e2eLatencies struct {
	committed, produced, delivered []time.Duration
}

func (r *e2eRun) latencies(times *recordTimes, w *watcher, inbox func(paymentID string) (time.Time, bool)) (e2eLatencies, error) {
	var l e2eLatencies
	missingTS := 0
	for _, s := range r.sent {
		if !s.ok || s.at.Sub(r.start) < e2eWarmup {
			continue
		}
		paid, ok := times.get(s.answer.Partition, s.answer.Offset)
		if !ok {
			missingTS++
			continue
		}
		e, _ := w.seen(schemas.OrderID(s.answer.PaymentID))
		l.committed = append(l.committed, e.committed.Sub(paid))
		l.produced = append(l.produced, e.produced.Sub(paid))
		if at, ok := inbox(s.answer.PaymentID); ok {
			l.delivered = append(l.delivered, at.Sub(paid))
		}
	}
	if len(l.committed) == 0 {
		return l, fmt.Errorf("no payment to measure (%d failed, %d without a record timestamp)", r.failed, missingTS)
	}
	return l, nil
}

// busyPercent is how busy all the machine's CPUs were over d, in which
// they spent ticks of machineTicks: at 100 the figures measure a queue for
// the CPU more than the shop or the cluster.
func busyPercent(ticks int64, d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	cores := float64(ticks) / clockTicks / d.Seconds()
	return fmt.Sprintf("%.0f", 100*cores/float64(runtime.NumCPU()))
}

// waitInbox waits until the confirmation of every order of orderIDs is in
// the mail sink, and returns when a payment's arrived. Without a sink (the
// emails are not delivered) it waits for nothing.
func waitInbox(ctx context.Context, sink *mailSink, orderIDs []string, p *progress) (func(paymentID string) (time.Time, bool), error) {
	if sink == nil {
		return func(string) (time.Time, bool) { return time.Time{}, false }, nil
	}
	messageID := func(orderID string) string { return email.MessageID(schemas.EmailID(orderID)) }
	missing := make([]string, len(orderIDs))
	for i, id := range orderIDs {
		missing[i] = messageID(id)
	}
	deadline, last := time.Now().Add(60*time.Second), time.Now()
	for {
		missing = slices.DeleteFunc(missing, func(id string) bool { _, ok := sink.arrival(id); return ok })
		if len(missing) == 0 {
			return func(paymentID string) (time.Time, bool) {
				return sink.arrival(messageID(schemas.OrderID(paymentID)))
			}, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d confirmations never reached the mail server", len(missing), len(orderIDs))
		}
		if time.Since(last) >= 2*time.Second {
			p.Printf("e2e: %d/%d emails in the mail server's hands", len(orderIDs)-len(missing), len(orderIDs))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
