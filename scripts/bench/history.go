package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/shoppers"
	"github.com/blackfriday-kafka/shop/services/email"
	"github.com/blackfriday-kafka/shop/services/order"
	"github.com/blackfriday-kafka/shop/services/payment"
	"github.com/blackfriday-kafka/shop/txn/kafkaclient"
	"github.com/blackfriday-kafka/shop/txn/lag"
)

// history is a shop's past written straight to its topics, for the
// restore and dedup sections: for each payment, the records the pipeline
// would have written for it, encoded with the same codecs, keyed and
// partitioned the same way, committed the same way:
//
//   - the payment on payment-successful (idempotent producer, as the
//     payment service writes it);
//   - its order on order-created and its email on email-sent, each in
//     transactions of historyTxn records, as the order and email stages
//     commit under load (eos_batch), with their commit markers;
//   - the email's delivery on email-deliveries, as the delivery loop
//     writes it once the mail server took the message.
//
// The order, email and delivery groups are then moved to the ends of their
// input topics, as if the stages had consumed everything: a service started
// afterwards does not process the history again.
//
// Writing the records is much faster than running them through the
// pipeline (a million payments take about a minute here against several
// minutes through the stages, and no mail is sent), and it gives the
// readers what they would read: the same records, partitions, transaction
// markers and state topics. What it leaves out is what the history has no
// use for: no dead letters, no duplicates, no aborted transactions.
//
// The history is dated 25 hours back, 10,000 payments a second: outside the
// 24-hour IDEMPOTENCY_WINDOW of the services other people run on a shared
// cluster, whose order service would otherwise load every one of its
// orders into memory for a day. The dedup section runs its order service
// with a window that reaches back to the history's first order.
type history struct {
	cat     *schemas.Catalog
	rng     *rand.Rand
	run     string    // this run's name, in the keys it writes
	start   time.Time // the date of the first payment
	written int       // payments written
	cents   int64     // their revenue

	answered int     // answers to Idempotency-Keys written
	retries  []retry // a uniform sample of them, for the ledger's replays

	payments *kgo.Client // idempotent: payments and deliveries
	orders   *kgo.Client // transactional
	emails   *kgo.Client // transactional
}

// historyTxn is how many orders, or emails, a transaction of the history
// holds: about what a stage commits at a time under load (eos_batch).
const historyTxn = 50_000

// historySpacing is the time between two payments of the history.
const historySpacing = 100 * time.Microsecond

// historyGroups are the groups that must be empty, and caught up, before
// the history is written, with the topic each one consumes.
var historyGroups = map[string]string{
	schemas.Group("order"): schemas.Payments.Name,
	schemas.Group("email"): schemas.Orders.Name,
	schemas.DeliveryGroup:  schemas.Emails.Name,
}

func newHistory(o Options, cat *schemas.Catalog) (*history, error) {
	run := strconv.FormatInt(time.Now().UnixMilli(), 36)
	// No RecordDeliveryTimeout: franz-go counts it from a record's timestamp,
	// and the history's are a day old.
	opts := []kgo.Opt{kgo.SeedBrokers(o.Brokers...), kgo.MaxBufferedRecords(historyTxn)}
	h := &history{cat: cat, rng: rand.New(rand.NewPCG(13, 17)), run: run,
		start: time.Now().Add(-25 * time.Hour).UTC().Truncate(time.Millisecond)}
	var err error
	if h.payments, err = kgo.NewClient(opts...); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		cl   **kgo.Client
		name string
	}{{&h.orders, "orders"}, {&h.emails, "emails"}} {
		if *c.cl, err = kgo.NewClient(append(opts, kgo.TransactionalID("bench-history-"+c.name+"-"+run), kafkaclient.Transactions())...); err != nil {
			h.close()
			return nil, err
		}
	}
	return h, nil
}

func (h *history) close() {
	for _, cl := range []*kgo.Client{h.payments, h.orders, h.emails} {
		if cl != nil {
			cl.Close()
		}
	}
}

// check refuses to write a history where a service of the shop runs, or
// where one has work left: moving the groups to the ends would skip it.
func (h *history) check(ctx context.Context) error {
	adm := kadm.NewClient(h.payments)
	for group, topic := range historyGroups {
		// lag.Collect, not kadm's Lag: on a topic written in transactions the
		// high watermark stays a commit marker past a group that read it all.
		// A group's own error is no refusal, as before: one not created yet
		// reports GROUP_ID_NOT_FOUND.
		rep, err := lag.Collect(ctx, adm, group)
		if err != nil {
			return err
		}
		for _, g := range rep.Groups {
			if len(g.Members) > 0 {
				return fmt.Errorf("group %s has %d members: a service of the shop runs on this cluster, and it would process the history; stop it first", group, len(g.Members))
			}
			total := int64(0)
			for _, p := range g.Partitions {
				if p.Topic == topic {
					total += p.Pending()
				}
			}
			if total > 0 {
				return fmt.Errorf("group %s has %d records of %s left to process: writing the history, which moves it to the end, would skip them", group, total, topic)
			}
		}
	}
	return nil
}

// grow writes payments until the history holds n, then moves the groups
// to the ends of their topics.
func (h *history) grow(ctx context.Context, n int, p *progress) error {
	if n <= h.written {
		return nil
	}
	began, from := time.Now(), h.written
	lastReport := began
	payments, orders, emails := schemas.Payments.Codec(h.cat), schemas.Orders.Codec(h.cat), schemas.Emails.Codec(h.cat)
	var failed kgo.FirstErrPromise
	for h.written < n {
		chunk := min(historyTxn, n-h.written)
		ords := make([]*kgo.Record, 0, chunk)
		mails := make([]*kgo.Record, 0, chunk)
		ids := make([]string, 0, chunk)
		for range chunk {
			paid := h.start.Add(time.Duration(h.written) * historySpacing)
			pay := shoppers.Payment(h.rng, 100_000)
			pay.PaidAt = paid
			pr, err := payments.Record(&pay)
			if err != nil {
				return err
			}
			pr.Timestamp = paid
			h.payments.Produce(ctx, pr, failed.Promise())

			// The order and the email as the order and email steps make
			// them, some milliseconds later each.
			o := order.FromPayment(&pay, paid.Add(40*time.Millisecond))
			or, err := orders.Record(&o)
			if err != nil {
				return err
			}
			or.Timestamp = o.CreatedAt
			ords = append(ords, or)
			e := email.QueuedEmail(&o, o.CreatedAt.Add(60*time.Millisecond))
			er, err := emails.Record(&e)
			if err != nil {
				return err
			}
			er.Timestamp = e.SentAt
			mails = append(mails, er)
			ids = append(ids, e.EmailID)
			h.cents += pay.TotalCents
			h.written++
		}
		if err := h.transaction(ctx, h.orders, ords); err != nil {
			return fmt.Errorf("orders: %w", err)
		}
		if err := h.transaction(ctx, h.emails, mails); err != nil {
			return fmt.Errorf("emails: %w", err)
		}
		if err := h.deliveries(ctx, mails, ids, failed.Promise); err != nil {
			return err
		}
		if err := failed.Err(); err != nil {
			return err
		}
		if now := time.Now(); now.Sub(lastReport) >= reportEvery {
			p.Printf("history: %d/%d payments with their orders, emails and deliveries written, %s/s", h.written, n, rate(h.written-from, now.Sub(began)))
			lastReport = now
		}
	}
	if err := h.payments.Flush(ctx); err != nil {
		return err
	}
	if err := failed.Err(); err != nil {
		return err
	}
	if err := h.catchUpGroups(ctx); err != nil {
		return err
	}
	p.Printf("history: %d payments written in %s (%s/s), 4 records each", n-from, time.Since(began).Round(100*time.Millisecond), rate(n-from, time.Since(began)))
	return nil
}

// deliveries writes the delivery of each email of mails, whose IDs are
// ids, once they are committed and have offsets, 300 ms after the email's
// timestamp, its SentAt; promise gives each produce's promise.
func (h *history) deliveries(ctx context.Context, mails []*kgo.Record, ids []string, promise func() func(*kgo.Record, error)) error {
	for i, r := range mails {
		at := r.Timestamp.Add(300 * time.Millisecond)
		dr, err := email.Delivery{EmailID: ids[i], State: email.Delivered, Partition: r.Partition, Offset: r.Offset,
			MessageID: email.MessageID(ids[i]), At: at}.Record()
		if err != nil {
			return err
		}
		dr.Timestamp = at
		h.payments.Produce(ctx, dr, promise())
	}
	return nil
}

// transaction writes recs in one transaction of cl; once it returns, each
// record has its partition and offset.
func (h *history) transaction(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	if err := cl.BeginTransaction(); err != nil {
		return err
	}
	var failed kgo.FirstErrPromise
	for _, r := range recs {
		cl.Produce(ctx, r, failed.Promise())
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if err := failed.Err(); err != nil {
		_ = cl.EndTransaction(context.WithoutCancel(ctx), kgo.TryAbort)
		return err
	}
	return cl.EndTransaction(ctx, kgo.TryCommit)
}

// catchUpGroups commits, for each stage's group, the ends of its input
// topic: everything of the history is consumed.
func (h *history) catchUpGroups(ctx context.Context) error {
	adm := kadm.NewClient(h.payments)
	for group, topic := range historyGroups {
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return err
		}
		offsets := make(kadm.Offsets)
		ends.Each(func(o kadm.ListedOffset) {
			offsets.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.Offset, LeaderEpoch: -1})
		})
		if err := adm.CommitAllOffsets(ctx, group, offsets); err != nil {
			return fmt.Errorf("move group %s to the end of %s: %w", group, topic, err)
		}
	}
	return nil
}

// retry is a request of the history, sent again: its Idempotency-Key and
// body.
type retry struct {
	key  string
	body []byte
}

// retrySample is how many retries the history keeps, chosen uniformly
// among all its answers (reservoir sampling): the ledger section replays
// them.
const retrySample = 2000

// growAnswers writes answers to Idempotency-Keys straight to
// payment-requests until the history holds n, as the payment service
// records them (payment.AnswerRecord): one a payment of one cart line, by
// one of 100,000 users, under a key of this run, dated as the history's
// payments are. The payments themselves are not written: the ledger
// section measures the ledger alone. Each answer names the payment's
// record by a position of its own, the i-th of the history.
func (h *history) growAnswers(ctx context.Context, n int, p *progress) error {
	began, from := time.Now(), h.answered
	lastReport := began
	var failed kgo.FirstErrPromise
	var body []byte
	for ; h.answered < n; h.answered++ {
		i := h.answered
		at := h.start.Add(time.Duration(i) * historySpacing)
		body = shoppers.AppendBody(body[:0], h.rng, 1+h.rng.Int64N(100_000), 1)
		req, fe := payment.ParseRequest(body)
		if fe != nil {
			return fe
		}
		key := "bench-" + h.run + "-" + strconv.Itoa(i)
		written := &kgo.Record{Topic: schemas.Payments.Name, Partition: int32(i % 3), Offset: int64(i / 3)}
		r, err := payment.AnswerRecord(req, key, written, at)
		if err != nil {
			return err
		}
		h.payments.Produce(ctx, r, failed.Promise())
		if len(h.retries) < retrySample {
			h.retries = append(h.retries, retry{key, slices.Clone(body)})
		} else if j := h.rng.IntN(i + 1); j < retrySample {
			h.retries[j] = retry{key, slices.Clone(body)}
		}
		if i%10_000 == 0 {
			if err := failed.Err(); err != nil {
				return err
			}
			if now := time.Now(); now.Sub(lastReport) >= reportEvery {
				p.Printf("history: %d/%d answers written, %s/s", i, n, rate(i-from, now.Sub(began)))
				lastReport = now
			}
		}
	}
	if err := h.payments.Flush(ctx); err != nil {
		return err
	}
	if err := failed.Err(); err != nil {
		return err
	}
	p.Printf("history: %d answers written to %s in %s (%s/s)", n-from, schemas.PaymentRequests.Name,
		time.Since(began).Round(100*time.Millisecond), rate(n-from, time.Since(began)))
	return nil
}
