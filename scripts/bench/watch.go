package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
)

// emailSeen is when an email became readable with read_committed (its
// transaction committed), and the timestamp of its record (when the email
// service produced it, inside the transaction).
type emailSeen struct {
	committed time.Time
	produced  time.Time
}

// watcher follows email-sent with read_committed from where it ends when
// the run begins, and keeps each email's times by order ID.
type watcher struct {
	cat    *schemas.Catalog
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	emails map[string]emailSeen
}

func newWatcher(ctx context.Context, cat *schemas.Catalog, brokers []string) (*watcher, error) {
	from, err := infra.EndOffsets(ctx, brokers, []string{schemas.Emails.Name})
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(from),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{cat: cat, cl: cl, cancel: cancel, done: make(chan struct{}), emails: map[string]emailSeen{}}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			now := time.Now()
			w.mu.Lock()
			fetches.EachRecord(func(r *kgo.Record) {
				if e, err := schemas.Emails.Codec(cat).Decode(ctx, r.Value); err == nil {
					if _, dup := w.emails[e.OrderID]; !dup {
						w.emails[e.OrderID] = emailSeen{committed: now, produced: r.Timestamp}
					}
				}
			})
			w.mu.Unlock()
		}
	}()
	return w, nil
}

// count is how many distinct emails were seen so far.
func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.emails)
}

// seen returns the email of an order, if it was seen.
func (w *watcher) seen(orderID string) (emailSeen, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.emails[orderID]
	return e, ok
}

// waitAll waits until every order in orderIDs has its email, reporting the
// count every few seconds, and returns when the last one was committed. It
// gives up when no new email came for stall.
func (w *watcher) waitAll(ctx context.Context, orderIDs []string, stall time.Duration, report func(done int)) (time.Time, error) {
	lastCount, lastChange, lastReport := -1, time.Now(), time.Now()
	for {
		var last time.Time
		done := 0
		w.mu.Lock()
		for _, id := range orderIDs {
			if e, ok := w.emails[id]; ok {
				done++
				if e.committed.After(last) {
					last = e.committed
				}
			}
		}
		w.mu.Unlock()
		if done == len(orderIDs) {
			return last, nil
		}
		now := time.Now()
		if done != lastCount {
			lastCount, lastChange = done, now
		} else if now.Sub(lastChange) > stall {
			return last, fmt.Errorf("%d of %d emails after %s without a new one", done, len(orderIDs), stall)
		}
		if report != nil && now.Sub(lastReport) >= reportEvery {
			report(done)
			lastReport = now
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reportEvery is how often a long wait says how far it got.
const reportEvery = 5 * time.Second

// waitCount waits until at least n emails were seen in all.
func (w *watcher) waitCount(ctx context.Context, n int, stall time.Duration, report func(done int)) error {
	lastCount, lastChange, lastReport := -1, time.Now(), time.Now()
	for {
		done := w.count()
		if done >= n {
			return nil
		}
		now := time.Now()
		if done != lastCount {
			lastCount, lastChange = done, now
		} else if now.Sub(lastChange) > stall {
			return fmt.Errorf("%d of %d emails after %s without a new one", done, n, stall)
		}
		if report != nil && now.Sub(lastReport) >= reportEvery {
			report(done)
			lastReport = now
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (w *watcher) close() {
	w.cancel()
	<-w.done
	w.cl.Close()
}

// recordTimes follows a topic from where it ends now and keeps the
// timestamp of each record by partition and offset.
type recordTimes struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	times map[partOffset]time.Time
}

type partOffset struct {
	partition int32
	offset    int64
}

func newRecordTimes(ctx context.Context, brokers []string, topic string) (*recordTimes, error) {
	from, err := infra.EndOffsets(ctx, brokers, []string{topic})
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(from))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	t := &recordTimes{cl: cl, cancel: cancel, done: make(chan struct{}), times: map[partOffset]time.Time{}}
	go func() {
		defer close(t.done)
		for ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			t.mu.Lock()
			fetches.EachRecord(func(r *kgo.Record) { t.times[partOffset{r.Partition, r.Offset}] = r.Timestamp })
			t.mu.Unlock()
		}
	}()
	return t, nil
}

func (t *recordTimes) get(partition int32, offset int64) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ts, ok := t.times[partOffset{partition, offset}]
	return ts, ok
}

func (t *recordTimes) close() {
	t.cancel()
	<-t.done
	t.cl.Close()
}
