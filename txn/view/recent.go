package view

import (
	"bytes"
	"context"
	"encoding/gob"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/txn/metrics"
)

// Recent keeps a count of everything added and the newest items, for views
// such as /orders that show the last ones first.
type Recent[T any] struct {
	mu    sync.RWMutex
	keep  int
	items []T // ring of the newest keep items
	next  int
	count int
}

// NewRecent keeps the newest keep items.
func NewRecent[T any](keep int) *Recent[T] {
	return &Recent[T]{keep: keep, items: make([]T, 0, keep)}
}

// Add records one more item.
func (r *Recent[T]) Add(v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count++
	if len(r.items) < r.keep {
		r.items = append(r.items, v)
		return
	}
	r.items[r.next] = v
	r.next = (r.next + 1) % r.keep
}

// Newest returns the total count and up to limit items, newest first.
func (r *Recent[T]) Newest(limit int) (int, []T) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := min(limit, len(r.items))
	out := make([]T, 0, n)
	for i := 0; i < n; i++ {
		// the newest item sits just before next
		idx := (r.next - 1 - i + 2*len(r.items)) % len(r.items)
		out = append(out, r.items[idx])
	}
	return r.count, out
}

// recentSnapshot is a Recent as a checkpoint keeps it.
type recentSnapshot[T any] struct {
	Count int
	Items []T // oldest first
}

// Snapshot encodes the count and the newest items for a checkpoint.
func (r *Recent[T]) Snapshot() ([]byte, error) {
	count, newest := r.Newest(r.keep)
	slices.Reverse(newest)
	var buf bytes.Buffer
	err := gob.NewEncoder(&buf).Encode(recentSnapshot[T]{Count: count, Items: newest})
	return buf.Bytes(), err
}

// Restore replaces the count and items with those of a checkpoint.
func (r *Recent[T]) Restore(b []byte) error {
	var snap recentSnapshot[T]
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&snap); err != nil {
		return err
	}
	r.mu.Lock()
	r.items, r.next, r.count = r.items[:0], 0, 0
	r.mu.Unlock()
	for _, v := range snap.Items {
		r.Add(v)
	}
	r.mu.Lock()
	r.count = snap.Count
	r.mu.Unlock()
	return nil
}

// Fold returns the function that adds each committed record of a topic,
// decoded with codec, to r: the apply of a Follower.
func Fold[T any](r *Recent[T], codec *schemas.Codec[T]) func(context.Context, *kgo.Record) error {
	return func(ctx context.Context, rec *kgo.Record) error {
		v, err := codec.Decode(ctx, rec.Value)
		if err == nil {
			r.Add(*v)
		}
		return err
	}
}

// Latest is the newest committed values of one topic, with their count: a
// Follower folding into a Recent.
type Latest[T any] struct {
	*Recent[T]
	follow *Follower
	fold   func(context.Context, *kgo.Record) error
	kafka  prometheus.Collector
}

// NewLatest follows the topic of codec, keeping its newest keep values,
// and checkpoints them with cps every interval, if cps is not nil.
func NewLatest[T any](brokers []string, codec *schemas.Codec[T], keep int, log *slog.Logger, cps *Checkpoints, every time.Duration, opts ...kgo.Opt) (*Latest[T], error) {
	kafka := metrics.Kafka("view")
	f, err := Follow(brokers, log, []string{codec.Topic().Name}, append(opts, kgo.WithHooks(kafka))...)
	if err != nil {
		return nil, err
	}
	r := NewRecent[T](keep)
	if cps != nil {
		f.Checkpointed(r, cps, every)
	}
	return &Latest[T]{Recent: r, follow: f, fold: Fold(r, codec), kafka: kafka}, nil
}

// CaughtUp reports whether the view shows everything committed when it
// started.
func (l *Latest[T]) CaughtUp() bool { return l.follow.CaughtUp() }

// Run follows the topic until ctx is cancelled.
func (l *Latest[T]) Run(ctx context.Context) error { return l.follow.Run(ctx, l.fold) }

// Collector is the client metrics of the view's Kafka client.
func (l *Latest[T]) Collector() prometheus.Collector { return l.kafka }
