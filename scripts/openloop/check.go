package openloop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
)

// check is what a run's payments left in Kafka. Every record of
// payment-successful and order-created is keyed by its user as a decimal
// string, and each payment of a run has a user of its own: the key says
// which payment a record belongs to, with no need to decode it.
type check struct {
	o     Options
	admin *kadm.Client
	cl    *kgo.Client
	// from are the ends of both topics before the load: records before
	// them are no part of the run.
	from map[string]map[int32]kgo.Offset
}

// Checked is what the check found.
type Checked struct {
	// Charged counts the records of payment-successful of the run's users.
	Charged int `json:"charged"`
	// ChargedUnanswered counts the users charged whose client did not get
	// a 200: a timeout, a 503, a cut connection.
	ChargedUnanswered int `json:"charged_unanswered"`
	// Duplicates counts the records beyond the first of a user.
	Duplicates int `json:"duplicates"`
	// Lost counts the users answered 200 without an order on
	// order-created (read_committed) when the drain ended.
	Lost int `json:"lost"`
	// Drained: the drain ended with every answered user's order and
	// payment-successful quiet, not at its bound.
	Drained bool `json:"drained"`
}

// startCheck notes the ends of payment-successful and order-created.
func startCheck(ctx context.Context, o Options) (*check, error) {
	from, err := infra.EndOffsets(ctx, o.Brokers, []string{schemas.Payments.Name, schemas.Orders.Name}, o.Kafka...)
	if err != nil {
		return nil, fmt.Errorf("the ends of %s and %s at %v: %w", schemas.Payments.Name, schemas.Orders.Name, o.Brokers, err)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...)}, o.Kafka...)...)
	if err != nil {
		return nil, err
	}
	return &check{o: o, admin: kadm.NewClient(cl), from: from}, nil
}

func (c *check) close() {
	if c.cl != nil {
		c.cl.Close()
	}
	c.admin.Close()
}

// quietFor is how long payment-successful must not grow, once read to its
// end, for the check to count its charges as final: a payment service
// still writes what it accepted before its clients gave up.
const quietFor = time.Second

// reckon reads both topics from the marks, keys only, and waits until
// every payment answered 200 has its order and payment-successful is
// quiet, or o.Drain has passed; out gets a line of progress every second.
func (c *check) reckon(ctx context.Context, l *load, out io.Writer) (Checked, error) {
	var err error
	c.cl, err = kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.o.Brokers...),
		kgo.ConsumePartitions(c.from), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(200 * time.Millisecond)}, c.o.Kafka...)...)
	if err != nil {
		return Checked{}, err
	}
	t := newTally(l)
	read := map[int32]int64{} // payment-successful read up to, by partition
	for p, at := range c.from[schemas.Payments.Name] {
		read[p] = at.EpochOffset().Offset
	}
	began, deadline := time.Now(), time.Now().Add(c.o.Drain)
	var lastEnds map[int32]int64
	var quietSince time.Time
	for look := time.Now(); ; {
		if err := c.poll(ctx, t, read); err != nil {
			return t.result(false), err
		}
		if time.Since(look) < time.Second {
			continue
		}
		look = time.Now()
		ends, err := c.paymentEnds(ctx)
		if err != nil {
			return t.result(false), err
		}
		if !maps.Equal(ends, lastEnds) || !readTo(read, ends) {
			quietSince = look
		}
		lastEnds = ends
		quiet := look.Sub(quietSince) >= quietFor
		if out != nil {
			fmt.Fprintf(out, "overload: check %3.0fs  %d/%d payments answered 200 have their order; %d records of this run's users on %s, %s\n",
				time.Since(began).Seconds(), t.answered-t.waiting, t.answered, t.charged, schemas.Payments.Name, growing(quiet))
		}
		if t.waiting == 0 && quiet {
			return t.result(true), nil
		}
		if look.After(deadline) {
			return t.result(false), nil
		}
	}
}

func growing(quiet bool) string {
	if quiet {
		return "no longer growing"
	}
	return "still growing"
}

// poll reads what came, for up to half a second, into t, and notes how far
// payment-successful is read.
func (c *check) poll(ctx context.Context, t *tally, read map[int32]int64) error {
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	fetches := c.cl.PollFetches(pctx)
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, fe := range fetches.Errors() {
		if !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, context.Canceled) {
			return fmt.Errorf("%s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
		}
	}
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		for _, r := range p.Records {
			t.add(r.Topic, r.Key)
		}
		// A partition's records come in offset order: the last is the
		// furthest read.
		if p.Topic == schemas.Payments.Name {
			last := p.Records[len(p.Records)-1]
			read[p.Partition] = max(read[p.Partition], last.Offset+1)
		}
	})
	return nil
}

// paymentEnds are the ends of payment-successful now, by partition.
func (c *check) paymentEnds(ctx context.Context) (map[int32]int64, error) {
	ends, err := c.admin.ListEndOffsets(ctx, schemas.Payments.Name)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	ends.Each(func(e kadm.ListedOffset) { out[e.Partition] = e.Offset })
	return out, nil
}

// readTo says whether every partition is read to its end. The last
// record read stands for the position: payment-successful is written by
// idempotent producers, never in transactions, so no commit marker takes
// an offset no record is read at.
func readTo(read, ends map[int32]int64) bool {
	for p, end := range ends {
		if read[p] < end {
			return false
		}
	}
	return true
}

// tally counts, by payment of the run, the charges and the orders.
type tally struct {
	l        *load
	charges  []uint16 // records on payment-successful, saturating
	ordered  []bool
	charged  int // records of the run's users on payment-successful
	answered int // payments answered 200
	waiting  int // of them, without an order yet
}

func newTally(l *load) *tally {
	t := &tally{l: l, charges: make([]uint16, l.sched.n), ordered: make([]bool, l.sched.n)}
	t.answered = int(l.counts[ok].Load())
	t.waiting = t.answered
	return t
}

// add counts a record of topic keyed key, if it is one of the run's users.
func (t *tally) add(topic string, key []byte) {
	user, err := strconv.ParseInt(string(key), 10, 64)
	if err != nil || user < t.l.o.FirstUser || user-t.l.o.FirstUser >= int64(t.l.sched.n) {
		return
	}
	i := int(user - t.l.o.FirstUser)
	switch topic {
	case schemas.Payments.Name:
		t.charged++
		if t.charges[i] < ^uint16(0) {
			t.charges[i]++
		}
	case schemas.Orders.Name:
		if !t.ordered[i] {
			t.ordered[i] = true
			if t.l.outcome[i] == ok {
				t.waiting--
			}
		}
	}
}

func (t *tally) result(drained bool) Checked {
	r := Checked{Charged: t.charged, Lost: t.waiting, Drained: drained}
	for i, n := range t.charges {
		if n == 0 {
			continue
		}
		r.Duplicates += int(n) - 1
		if t.l.outcome[i] != ok {
			r.ChargedUnanswered++
		}
	}
	return r
}
