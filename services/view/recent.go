package view

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/metrics"
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

// NewLatest follows the topic of codec, keeping its newest keep values.
func NewLatest[T any](brokers []string, codec *schemas.Codec[T], keep int, log *slog.Logger, opts ...kgo.Opt) (*Latest[T], error) {
	kafka := metrics.Kafka("view")
	f, err := Follow(brokers, log, []string{codec.Topic().Name}, append(opts, kgo.WithHooks(kafka))...)
	if err != nil {
		return nil, err
	}
	r := NewRecent[T](keep)
	return &Latest[T]{Recent: r, follow: f, fold: Fold(r, codec), kafka: kafka}, nil
}

// Run follows the topic until ctx is cancelled.
func (l *Latest[T]) Run(ctx context.Context) error { return l.follow.Run(ctx, l.fold) }

// Collector is the client metrics of the view's Kafka client.
func (l *Latest[T]) Collector() prometheus.Collector { return l.kafka }
