package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/shoppers"
	"github.com/blackfriday-kafka/shop/services/order"
	"github.com/blackfriday-kafka/shop/txn"
)

// runEOS measures what exactly-once costs. It writes o.EOSRecords payments
// to a topic of its own, then has the order transform read them all, in
// rounds, each with a fresh consumer group: on the exactly-once engine
// (transactions) and on the same engine in at-least-once mode (produce,
// flush, commit offsets), alternating which mode goes first so that load
// that grows or fades during the run weighs on both alike. Records go to a
// topic of the run's own, not to order-created, where the services would
// pick them up.
//
// Each mode's figure is the median of its rounds, and their ratio is the
// median of the ratios within each pair of rounds, which ran one right
// after the other: another program that takes the CPU for a moment slows
// one round or one pair down, not the figures. A
// round's rate is taken between its first and its last commit, so that
// joining the group, which differs between runs and not between modes,
// stays out of it. A round ends when it has committed every record, or
// o.EOSRoundFor after its first commit on a slower cluster: both modes
// then read the same first records.
func runEOS(ctx context.Context, o Options, cat *schemas.Catalog, p *progress, res *Results) error {
	run := strconv.FormatInt(time.Now().UnixMilli(), 36)
	in, out := "bench-payments-"+run, "bench-orders-"+run
	cl, err := kgo.NewClient(kgo.SeedBrokers(o.Brokers...), kgo.RecordDeliveryTimeout(time.Minute))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := createTopics(ctx, adm, in, out); err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(dctx, in, out)
	}()

	p.Printf("eos: writing %d payments to %s", o.EOSRecords, in)
	if err := writePayments(ctx, cl, cat, in, o.EOSRecords); err != nil {
		return err
	}

	// The transform as the order service runs it, logs at warn: per-record
	// work is the same in both modes, and the smaller it is, the larger
	// the share of the transactions, so this is the harder comparison.
	transform := order.Transform(cat, 0, slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})))
	handler := func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		outs, err := transform(ctx, r)
		for _, x := range outs {
			x.Topic = out
		}
		return outs, err
	}

	var (
		rates   [2][]float64 // records per second of each round, by mode
		batches [2]roundResult
	)
	names := [2]string{"eos", "alos"}
	for round := range o.EOSRounds {
		modes := []txn.Mode{txn.ExactlyOnce, txn.AtLeastOnce}
		if round%2 == 1 {
			modes = []txn.Mode{txn.AtLeastOnce, txn.ExactlyOnce}
		}
		for _, mode := range modes {
			r, err := measureRound(ctx, o, mode, fmt.Sprintf("bench-%s-%s-%d", run, names[mode], round+1), in, handler)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", names[mode], round+1, err)
			}
			p.Printf("eos: round %d %-4s %6s records/s  (%d records in %d transactions of %.0f on average, %d aborted, %s)",
				round+1, names[mode], rate(r.records, r.took), r.records, r.batches, float64(r.records)/float64(max(1, r.batches)), r.aborted, r.took.Round(time.Millisecond))
			rates[mode] = append(rates[mode], float64(r.records)/r.took.Seconds())
			batches[mode].add(r)
		}
	}
	var pairs []float64
	for i := range rates[txn.ExactlyOnce] {
		pairs = append(pairs, rates[txn.ExactlyOnce][i]/rates[txn.AtLeastOnce][i])
	}
	ratio := median(pairs)
	eosRate, alosRate := median(rates[txn.ExactlyOnce]), median(rates[txn.AtLeastOnce])
	eos := batches[txn.ExactlyOnce]
	p.Printf("eos: medians of %d rounds: exactly-once %.0f records/s, at-least-once %.0f records/s; median ratio within a pair of rounds %.3f",
		o.EOSRounds, eosRate, alosRate, ratio)
	res.Add("eos_rps", fmt.Sprintf("%.0f", eosRate))
	res.Add("alos_rps", fmt.Sprintf("%.0f", alosRate))
	res.Add("eos_over_alos", fmt.Sprintf("%.3f", ratio))
	res.Add("eos_batch", fmt.Sprintf("%.0f", float64(eos.records)/float64(max(1, eos.batches))))
	return nil
}

// median of xs.
func median(xs []float64) float64 {
	xs = slices.Sorted(slices.Values(xs))
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

type roundResult struct {
	records, batches, aborted int
	took                      time.Duration
}

func (r *roundResult) add(o roundResult) {
	r.records += o.records
	r.batches += o.batches
	r.aborted += o.aborted
	r.took += o.took
}

// measureRound runs one engine with a fresh group until it has committed
// every record of topic in.
func measureRound(ctx context.Context, o Options, mode txn.Mode, id, in string, handler txn.Handler) (roundResult, error) {
	type commit struct {
		at      time.Time
		records int
	}
	var (
		mu      sync.Mutex
		commits []commit
		aborted int
	)
	e, err := txn.New(txn.Config{
		Brokers:         o.Brokers,
		Group:           id,
		Topic:           in,
		TransactionalID: id,
		InstanceID:      id, // as the services run: static members
		// A benchmark payment is never poison: an error aborts.
		Handler:     handler,
		MaxRecords:  o.TxnRecords,
		MaxInterval: o.TxnInterval,
		Mode:        mode,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		OnBatch: func(b txn.Batch) {
			mu.Lock()
			defer mu.Unlock()
			if b.Committed {
				commits = append(commits, commit{time.Now(), b.Records})
			} else {
				aborted++
			}
		},
	})
	if err != nil {
		return roundResult{}, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(rctx) }()
	deadline := time.After(3 * time.Minute)
	firstCommit := func() (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		if len(commits) == 0 {
			return time.Time{}, false
		}
		return commits[0].at, true
	}
	for e.Stats().Records < int64(o.EOSRecords) {
		if first, ok := firstCommit(); ok && time.Since(first) >= o.EOSRoundFor {
			break
		}
		select {
		case err := <-done:
			return roundResult{}, fmt.Errorf("engine stopped: %v", err)
		case <-deadline:
			cancel()
			<-done
			return roundResult{}, fmt.Errorf("only %d of %d records after 3 minutes", e.Stats().Records, o.EOSRecords)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		return roundResult{}, err
	}
	mu.Lock()
	defer mu.Unlock()
	r := roundResult{aborted: aborted}
	if len(commits) < 2 {
		return r, fmt.Errorf("%d commits: too few records to measure a rate", len(commits))
	}
	for _, c := range commits[1:] {
		r.records += c.records
	}
	r.batches = len(commits) - 1
	r.took = commits[len(commits)-1].at.Sub(commits[0].at)
	return r, nil
}

// createTopics creates the run's topics like the shop's: 3 partitions,
// replicated as the cluster allows.
func createTopics(ctx context.Context, adm *kadm.Client, topics ...string) error {
	meta, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return err
	}
	replicas, configs := infra.TopicSettings(len(meta.Brokers))
	resps, err := adm.CreateTopics(ctx, infra.Partitions, replicas, configs, topics...)
	if err != nil {
		return err
	}
	for _, r := range resps.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// writePayments writes n valid payments to topic, keyed by user.
func writePayments(ctx context.Context, cl *kgo.Client, cat *schemas.Catalog, topic string, n int) error {
	rng := rand.New(rand.NewPCG(5, 6))
	var failed kgo.FirstErrPromise
	for range n {
		pay := shoppers.Payment(rng, 10_000)
		r, err := schemas.Payments.Codec(cat).Record(&pay)
		if err != nil {
			return err
		}
		r.Topic = topic
		cl.Produce(ctx, r, failed.Promise())
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return failed.Err()
}
