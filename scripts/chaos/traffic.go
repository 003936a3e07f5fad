package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/pace"
	"github.com/blackfriday-kafka/shop/scripts/shoppers"
	"github.com/blackfriday-kafka/shop/services/email"
)

// acceptedSet holds the payments a sender saw accepted, with their totals
// in cents, by the key their orders are counted under.
type acceptedSet struct {
	mu       sync.Mutex
	accepted map[string]int64
}

func (a *acceptedSet) add(key string, total int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.accepted[key] = total
}

// count is how many payments were accepted so far.
func (a *acceptedSet) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.accepted)
}

// ids are the accepted payments; read them only once sending is over.
func (a *acceptedSet) ids() map[string]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accepted
}

// sender writes valid payments straight to payment-successful.
type sender struct {
	acceptedSet // payment ID -> total cents, once acknowledged
	cat         *schemas.Catalog
	cl          *kgo.Client
	err         error
}

func newSender(cat *schemas.Catalog, o Options) *sender {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...), kgo.RecordDeliveryTimeout(time.Minute)}, o.Connect...)...)
	return &sender{acceptedSet: acceptedSet{accepted: make(map[string]int64)}, cat: cat, cl: cl, err: err}
}

// send writes n payments evenly over d. Only acknowledged payments count as
// accepted; the idempotent producer never writes one twice.
func (s *sender) send(ctx context.Context, n int, d time.Duration, seed uint64) error {
	if s.err != nil {
		return s.err
	}
	rng := rand.New(rand.NewPCG(seed, seed+1))
	start := time.Now()
	var failed error
	var failMu sync.Mutex
	for i := 0; i < n; i++ {
		if err := pace.Wait(ctx, start, i, n, d); err != nil {
			return err
		}
		p := shoppers.Payment(rng, 500)
		r, err := schemas.Payments.Codec(s.cat).Record(&p)
		if err != nil {
			return err
		}
		s.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				failMu.Lock()
				failed = err
				failMu.Unlock()
				return
			}
			s.add(p.PaymentID, p.TotalCents)
		})
	}
	if err := s.cl.Flush(ctx); err != nil {
		return err
	}
	failMu.Lock()
	defer failMu.Unlock()
	return failed
}

func (s *sender) close() {
	if s.cl != nil {
		s.cl.Close()
	}
}

// watch follows the output topics while the run goes on, to see it drain.
type watch struct {
	cat       *schemas.Catalog
	paymentOf func(*schemas.OrderCreated) string
	cl        *kgo.Client
	cancel    context.CancelFunc
	done      chan struct{}

	mu      sync.Mutex
	orders  map[string]string // payment (as paymentOf says) -> order ID
	emailed map[string]bool   // order IDs with an email
}

func newWatch(ctx context.Context, cat *schemas.Catalog, o Options, from map[string]map[int32]kgo.Offset) (*watch, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...), kgo.ConsumePartitions(from),
		kgo.FetchIsolationLevel(kgo.ReadCommitted())}, o.Connect...)...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &watch{cat: cat, paymentOf: o.paymentOf, cl: cl, cancel: cancel, done: make(chan struct{}), orders: map[string]string{}, emailed: map[string]bool{}}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			for _, r := range cl.PollFetches(ctx).Records() {
				w.see(ctx, r)
			}
		}
	}()
	return w, nil
}

func (w *watch) see(ctx context.Context, r *kgo.Record) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch r.Topic {
	case schemas.Orders.Name:
		if o, err := schemas.Orders.Codec(w.cat).Decode(ctx, r.Value); err == nil {
			w.orders[w.paymentOf(o)] = o.OrderID
		}
	case schemas.Emails.Name:
		if e, err := schemas.Emails.Codec(w.cat).Decode(ctx, r.Value); err == nil {
			w.emailed[e.OrderID] = true
		}
	}
}

// drained: every accepted payment has an order, and every such order an email.
func (w *watch) drained(accepted map[string]int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range accepted {
		o, ok := w.orders[id]
		if !ok || !w.emailed[o] {
			return false
		}
	}
	return true
}

// undelivered counts the orders seen whose email the mail server does not
// have yet, by Message-ID.
func (w *watch) undelivered(ctx context.Context, mail *mailServer) (int, error) {
	counts, err := mail.messages(ctx)
	if err != nil {
		return 0, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	missing := 0
	for _, o := range w.orders {
		if counts[email.MessageID(schemas.EmailID(o))] == 0 {
			missing++
		}
	}
	return missing, nil
}

func (w *watch) progress() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("orders %d  emails %d", len(w.orders), len(w.emailed))
}

func (w *watch) close() {
	w.cancel()
	<-w.done
	w.cl.Close()
}
