package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/latency"
	"github.com/blackfriday-kafka/shop/scripts/pace"
	"github.com/blackfriday-kafka/shop/services/payment"
	"github.com/blackfriday-kafka/shop/txn/kafkaclient"
)

// runRaw measures the raw produce limit of the cluster: franz-go producing
// the payment records the ingest section makes the payment service write
// (the same bodies, parsed and encoded as the service does, keyed by user),
// with acks=all and the idempotent producer, and nothing else: no HTTP, no
// service, no encoding while it runs. Records go to a topic of the run's
// own, created like payment-successful (3 partitions, replicated as the
// cluster allows), so that no service reads them. Several goroutines keep
// the producer's buffer full (o.RawBuffered records in flight), so that
// every broker has as many produce requests in flight as the idempotent
// producer allows (5). Only acknowledgements within the o.IngestFor after a
// warm-up count, as in ingest.
func runRaw(ctx context.Context, o Options, cat *schemas.Catalog, p *progress, res *Results) error {
	topic := "bench-raw-" + strconv.FormatInt(time.Now().UnixMilli(), 36)
	admCl, err := kgo.NewClient(kgo.SeedBrokers(o.Brokers...))
	if err != nil {
		return err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	if err := createTopics(ctx, adm, topic); err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(dctx, topic)
	}()

	recs, size, err := rawRecords(cat)
	if err != nil {
		return err
	}
	producer, err := rawProducer(ctx, o, topic, recs[0], kgo.MaxBufferedRecords(o.RawBuffered))
	if err != nil {
		return err
	}
	defer producer.Close()

	p.Printf("raw: franz-go producing %d-byte payment records (keyed by user, acks=all, idempotent) to %s for %s (after %s of warm-up), up to %d in flight; load average %s",
		size/len(recs), topic, o.IngestFor, ingestWarmup, o.RawBuffered, loadAverage())
	begin := time.Now()
	from, until := begin.Add(ingestWarmup), begin.Add(ingestWarmup+o.IngestFor)
	var acked, failed atomic.Int64
	var firstErr atomic.Value
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			if failed.Add(1) == 1 {
				firstErr.Store(err)
			}
			return
		}
		if now := time.Now(); !now.Before(from) && !now.After(until) {
			acked.Add(1)
		}
	}
	const goroutines = 4
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ctx.Err() == nil; i += goroutines {
				if (i/goroutines)%64 == 0 && !time.Now().Before(until) {
					return
				}
				r := recs[i%len(recs)]
				producer.Produce(ctx, &kgo.Record{Key: r.Key, Value: r.Value}, promise)
			}
		}()
	}
	wg.Wait()
	if err := producer.Flush(ctx); err != nil {
		return err
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d records not acknowledged: %v", n, firstErr.Load())
	}
	n := int(acked.Load())
	p.Printf("raw: %d records acknowledged in %s: %s/s; load average %s", n, o.IngestFor, rate(n, o.IngestFor), loadAverage())
	res.Add("raw_produce_rps", rate(n, o.IngestFor))
	if err := rawTransactions(ctx, o, topic, recs[:3], p, res); err != nil {
		return err
	}
	for _, r := range o.Rates {
		if err := rawAtRate(ctx, o, topic, recs, r, p, res); err != nil {
			return err
		}
	}
	return nil
}

// rawRecords are 10,000 payment records as the payment service writes
// those of the ingest's bodies, and their size together.
func rawRecords(cat *schemas.Catalog) ([]*kgo.Record, int, error) {
	codec := schemas.Payments.Codec(cat)
	bodies := paymentBodies()
	recs := make([]*kgo.Record, 10_000)
	size := 0
	for i := range recs {
		req, fe := payment.ParseRequest(bodies[i%len(bodies)])
		if fe != nil {
			return nil, 0, fmt.Errorf("bench body %d: %v", i, fe)
		}
		pay := schemas.PaymentSucceeded{PaymentID: uuid.NewString(), UserID: req.UserID, Cart: req.Cart,
			TotalCents: schemas.CartTotal(req.Cart), PaidAt: time.Now().UTC().Truncate(time.Millisecond)}
		r, err := codec.Record(&pay)
		if err != nil {
			return nil, 0, err
		}
		recs[i] = r
		size += len(r.Value)
	}
	return recs, size, nil
}

// rawTransactions measures the floor of an exactly-once hop on the
// cluster: one transactional producer alone, each transaction a record to
// each partition and a commit, one after the other for 5 s. A stage's
// transaction cannot start writing before the coordinator has finished
// the previous one (its markers written and replicated; until then
// AddPartitionsToTxn answers CONCURRENT_TRANSACTIONS), so this is also the
// shortest time between two commits of one stage (raw_txn_p50_ms,
// raw_txn_p99_ms, raw_txn_per_s).
func rawTransactions(ctx context.Context, o Options, topic string, recs []*kgo.Record, p *progress, res *Results) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(o.Brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.TransactionalID("bench-raw-"+uuid.NewString()),
		kgo.ProducerLinger(0),
		kafkaclient.Transactions(), // as the stages run
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	const runFor = 5 * time.Second
	var took []time.Duration
	for start := time.Now(); time.Since(start) < runFor && ctx.Err() == nil; {
		t0 := time.Now()
		if err := cl.BeginTransaction(); err != nil {
			return err
		}
		batch := make([]*kgo.Record, len(recs))
		for i, r := range recs {
			batch[i] = &kgo.Record{Key: r.Key, Value: r.Value}
		}
		perr := cl.ProduceSync(ctx, batch...).FirstErr()
		if err := cl.EndTransaction(context.WithoutCancel(ctx), kgo.TransactionEndTry(perr == nil)); err != nil {
			return err
		}
		if perr != nil {
			return perr
		}
		took = append(took, time.Since(t0))
	}
	p50, p99 := latency.Percentile(took, 50), latency.Percentile(took, 99)
	p.Printf("raw: one transactional producer alone, %d records and a commit per transaction: %d transactions in %s, p50 %sms p99 %sms",
		len(recs), len(took), runFor, ms(p50), ms(p99))
	res.Add("raw_txn_p50_ms", ms(p50))
	res.Add("raw_txn_p99_ms", ms(p99))
	res.Add("raw_txn_per_s", rate(len(took), runFor))
	return nil
}

// rawAtRate is what the cluster alone costs at an e2e rate: the same
// records produced at paymentRate a second for o.IngestFor, acks=all,
// idempotent, with o.RawLinger (0 by default, as the payment service
// produces), and nothing else running. It reports the acknowledgement's latency and how busy the
// machine was (raw_<rate>_ack_p99_ms, raw_<rate>_busy_pct): beside
// e2e_<rate>_busy_pct it says how much of the machine the brokers take
// before the shop does anything.
func rawAtRate(ctx context.Context, o Options, topic string, recs []*kgo.Record, paymentRate int, p *progress, res *Results) error {
	producer, err := rawProducer(ctx, o, topic, recs[0], kgo.ProducerLinger(o.RawLinger))
	if err != nil {
		return err
	}
	defer producer.Close()
	n := int(float64(paymentRate) * o.IngestFor.Seconds())
	var (
		mu     sync.Mutex
		took   = make([]time.Duration, 0, n)
		failed atomic.Int64
	)
	before, start := machineTicks(), time.Now()
	for i := range n {
		if err := pace.Wait(ctx, start, i, paymentRate, time.Second); err != nil {
			return err
		}
		r, at := recs[i%len(recs)], time.Now()
		producer.Produce(ctx, &kgo.Record{Key: r.Key, Value: r.Value}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
				return
			}
			mu.Lock()
			took = append(took, time.Since(at))
			mu.Unlock()
		})
	}
	if err := producer.Flush(ctx); err != nil {
		return err
	}
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("raw at %d/s: %d records not acknowledged", paymentRate, f)
	}
	busy := busyPercent(machineTicks()-before, time.Since(start))
	p50, p99 := ms(latency.Percentile(took, 50)), ms(latency.Percentile(took, 99))
	p.Printf("raw %d/s: franz-go alone producing %d records at %d/s (acks=all, idempotent, linger %s): acknowledged p50 %sms p99 %sms; the machine was %s%% busy",
		paymentRate, n, paymentRate, o.RawLinger, p50, p99, busy)
	res.Add(fmt.Sprintf("raw_%d_ack_p50_ms", paymentRate), p50)
	res.Add(fmt.Sprintf("raw_%d_ack_p99_ms", paymentRate), p99)
	res.Add(fmt.Sprintf("raw_%d_busy_pct", paymentRate), busy)
	return nil
}

// rawProducer connects the raw sections' producer to topic, idempotent
// with acks=all, with opts, and writes first through it, so that its
// connections and producer ID are in place before anything is timed.
func rawProducer(ctx context.Context, o Options, topic string, first *kgo.Record, opts ...kgo.Opt) (*kgo.Client, error) {
	producer, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // the default with idempotence, said here
		kgo.RecordDeliveryTimeout(time.Minute),
	}, opts...)...)
	if err != nil {
		return nil, err
	}
	if err := producer.ProduceSync(ctx, &kgo.Record{Key: first.Key, Value: first.Value}).FirstErr(); err != nil {
		producer.Close()
		return nil, fmt.Errorf("first record: %w", err)
	}
	return producer, nil
}
