package platform

import (
	"context"
	"errors"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Follower reads topics from their first offset with read_committed, outside
// any consumer group. Services build their views (/orders, /emails,
// /analytics) with it: a view fed only by committed records never shows work
// of an aborted transaction, and a restarted service rebuilds the same view
// from the log.
type Follower struct {
	cl  *kgo.Client
	log *slog.Logger
}

// NewFollower connects a follower of topics; opts are extra client options,
// such as metrics hooks.
func NewFollower(brokers []string, log *slog.Logger, topics []string, opts ...kgo.Opt) (*Follower, error) {
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

// Run calls apply for every record, one batch at a time, until ctx is
// cancelled. apply runs on one goroutine.
func (f *Follower) Run(ctx context.Context, apply func([]*kgo.Record)) error {
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
		if recs := fetches.Records(); len(recs) > 0 {
			apply(recs)
		}
	}
}

// Client is the follower's Kafka client, for health checks.
func (f *Follower) Client() *kgo.Client { return f.cl }
