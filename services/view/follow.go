// Package view is the read-committed view of a topic: what the services show
// on /orders, /emails and /analytics. A view reads its topics from the first
// offset with read_committed, outside any consumer group, so it never shows
// work of an aborted transaction, and a restarted service rebuilds the same
// view from the log.
package view

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
)

// Follower reads topics from their first offset with read_committed.
type Follower struct {
	cl  *kgo.Client
	log *slog.Logger
}

// Follow connects a follower of topics; opts are extra client options, such
// as the cluster's credentials and metrics hooks.
func Follow(brokers []string, log *slog.Logger, topics []string, opts ...kgo.Opt) (*Follower, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	}, opts...)...)
	if err != nil {
		return nil, err
	}
	return &Follower{cl: cl, log: log}, nil
}

// Run calls apply for every record, in order, on one goroutine, until ctx
// is cancelled. A record apply can never read (an error that is a
// *schemas.RecordError) is skipped: its consumer dead-letters it. Any other
// error (the registry is down, say) is retried, with a backoff: a view
// never skips what it merely could not read yet.
func (f *Follower) Run(ctx context.Context, apply func(context.Context, *kgo.Record) error) error {
	defer f.cl.Close()
	for {
		fetches := f.cl.PollFetches(ctx)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !errors.Is(err, context.Canceled) {
				f.log.Warn("fetch failed", "topic", topic, "partition", partition, "err", err)
			}
		})
		for _, r := range fetches.Records() {
			if !f.apply(ctx, r, apply) {
				return nil
			}
		}
	}
}

// apply applies one record, retrying while the failure may pass. It
// returns false if ctx ended first.
func (f *Follower) apply(ctx context.Context, r *kgo.Record, apply func(context.Context, *kgo.Record) error) bool {
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		err := apply(ctx, r)
		if _, never := errors.AsType[*schemas.RecordError](err); err == nil || never {
			if err != nil {
				f.log.Debug("skipping unreadable record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
					"key", string(r.Key), "err", err)
			}
			return true
		}
		f.log.Warn("record not applied to the view yet, retrying", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
			"key", string(r.Key), "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
	}
}

// Client is the follower's Kafka client, for health checks.
func (f *Follower) Client() *kgo.Client { return f.cl }
