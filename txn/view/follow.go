// Package view is the read-committed view of a topic: what the services show
// on /orders, /emails and /analytics. A view reads its topics with
// read_committed, so it never shows work of an aborted transaction; it
// starts from its latest checkpoint, if it keeps any, and otherwise from the
// first offset, so a restarted service shows the same view as before. A
// Follower reads every partition, outside any consumer group; a Partitioned
// view shares the partitions among the members of a group, by number.
package view

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/txn/kafkaclient"
	"github.com/blackfriday-kafka/shop/txn/loop"
)

// State is a view that can be checkpointed: Snapshot and Restore run on the
// follower's goroutine, between records.
type State interface {
	Snapshot() ([]byte, error)
	Restore([]byte) error
}

// Follower reads topics with read_committed and applies every record.
type Follower struct {
	cl     *kgo.Client
	topics []string
	log    *slog.Logger

	state State        // nil: no checkpoints
	cps   *Checkpoints // where they go
	every time.Duration

	stored Stored // nil: not kept on disk

	mu       sync.Mutex
	position map[string]map[int32]int64 // next offset to read
	caughtUp bool                       // reached the ends it saw at the start
}

// Follow connects a follower of topics; opts are extra client options, such
// as the cluster's credentials and metrics hooks.
func Follow(brokers []string, log *slog.Logger, topics []string, opts ...kgo.Opt) (*Follower, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// The markers of transactions count in the position, so that a
		// view knows when it has read to the end of a partition.
		kgo.KeepControlRecords(),
		// As the stages' consumers: see kafkaclient.FetchMaxWait.
		kgo.FetchMaxWait(kafkaclient.FetchMaxWait),
	}, opts...)...)
	if err != nil {
		return nil, err
	}
	return &Follower{cl: cl, topics: topics, log: log, position: make(map[string]map[int32]int64)}, nil
}

// Checkpointed makes f start from the latest checkpoint of state in cps and
// save one every interval while records come, and when it stops.
func (f *Follower) Checkpointed(state State, cps *Checkpoints, every time.Duration) *Follower {
	f.state, f.cps, f.every = state, cps, every
	return f
}

// Stored is a view kept on disk with the offsets of its topics that it
// covers, as a Kafka Streams store beside its checkpoint file: the
// follower asks it where to start reading each partition, and tells it
// when a poll's records are applied, so that it writes them to disk in one
// batch.
type Stored interface {
	// Resume returns the next offset to read of each partition, given the
	// topics' IDs and bounds as Kafka has them now; a partition it leaves
	// out is read from the start.
	Resume(ctx context.Context, parts []Bounds) (map[string]map[int32]int64, error)
	// Applied is called once a poll's records are applied, with the next
	// offset of every partition read so far.
	Applied(ctx context.Context, position map[string]map[int32]int64) error
}

// Bounds is what a partition holds as Kafka has it: the ID of its topic,
// and its first and next offset (the last stable one, as read_committed
// reads).
type Bounds struct {
	Topic      string
	TopicID    [16]byte
	Partition  int32
	Start, End int64
}

// Stored makes f start where s says and tell s of what it applied.
func (f *Follower) Stored(s Stored) *Follower {
	f.stored = s
	return f
}

// Run calls apply for every record, in order, on one goroutine, until ctx
// is cancelled. A record apply can never read (an error that is a
// *schemas.RecordError) is skipped: its consumer dead-letters it. Any other
// error (the registry is down, say) is retried, with a backoff: a view
// never skips what it merely could not read yet.
func (f *Follower) Run(ctx context.Context, apply func(context.Context, *kgo.Record) error) error {
	defer f.cl.Close()
	if f.cps != nil {
		defer f.cps.Close()
	}
	// Starting asks the cluster for the partitions' ends and the last
	// checkpoint: a broker down or a leader just elected (a restart while
	// the cluster heals) is waited out, not fatal.
	var ends map[string]map[int32]int64
	if !loop.Retry(ctx, f.log, "view not started yet, retrying", 100*time.Millisecond, 5*time.Second, func() (err error) {
		ends, err = f.start(ctx)
		return err
	}, "topics", f.topics) {
		return nil
	}
	saved := time.Now()
	dirty := false
	for {
		fetches := f.cl.PollFetches(ctx)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			f.save(ctx, dirty)
			return nil
		}
		// A follower is in no group, so nothing can fence it: the
		// errors are only logged.
		_ = kafkaclient.CheckFetches(fetches, f.log)
		records := fetches.Records()
		for _, r := range records {
			if r.Attrs.IsControl() {
				f.setPosition(r.Topic, r.Partition, r.Offset+1)
				continue
			}
			if !applyRetrying(ctx, f.log, r, apply) {
				f.save(ctx, dirty)
				return nil
			}
			f.setPosition(r.Topic, r.Partition, r.Offset+1)
			dirty = true
		}
		if f.stored != nil && len(records) > 0 && !loop.Retry(ctx, f.log, "view not written to disk yet, retrying",
			100*time.Millisecond, 5*time.Second, func() error { return f.stored.Applied(ctx, f.Position()) }, "topics", f.topics) {
			return nil
		}
		f.noteCaughtUp(ends)
		if dirty && f.cps != nil && time.Since(saved) >= f.every && f.save(ctx, true) {
			saved, dirty = time.Now(), false
		}
	}
}

// start restores the latest checkpoint, if any, and sets where to read
// each partition from. It returns the ends of the partitions, as of now.
func (f *Follower) start(ctx context.Context) (map[string]map[int32]int64, error) {
	adm := kadm.NewClient(f.cl)
	listed, err := adm.ListCommittedOffsets(ctx, f.topics...)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, err
	}
	var offsets map[string]map[int32]int64
	restored := false // started from a checkpoint
	if f.cps != nil {
		cp, err := f.cps.Load(ctx)
		switch {
		case err != nil:
			f.log.Warn("checkpoint not loaded, reading the topics from the start", "err", err)
		case cp != nil:
			if err := f.state.Restore(cp.State); err != nil {
				f.log.Warn("checkpoint not restored, reading the topics from the start", "err", err)
				break
			}
			offsets = cp.Offsets
			restored = true
		}
	}
	if f.stored != nil {
		if offsets, err = f.resume(ctx, adm, listed); err != nil {
			return nil, err
		}
	}
	ends := make(map[string]map[int32]int64)
	parts := make(map[string]map[int32]kgo.Offset)
	listed.Each(func(o kadm.ListedOffset) {
		if ends[o.Topic] == nil {
			ends[o.Topic], parts[o.Topic] = make(map[int32]int64), make(map[int32]kgo.Offset)
		}
		ends[o.Topic][o.Partition] = o.Offset
		at := kgo.NewOffset().AtStart()
		if off, ok := offsets[o.Topic][o.Partition]; ok {
			at = kgo.NewOffset().At(off)
			f.setPosition(o.Topic, o.Partition, off)
		}
		parts[o.Topic][o.Partition] = at
	})
	f.cl.AddConsumePartitions(parts)
	f.mu.Lock()
	f.caughtUp = f.reached(ends)
	f.mu.Unlock()
	f.log.Info("view started", "topics", f.topics, "from_checkpoint", restored, "from_disk", f.stored != nil, "offsets", offsets)
	return ends, nil
}

// resume asks the view on disk where to start, given the topics' IDs and
// first offsets, and the ends listed.
func (f *Follower) resume(ctx context.Context, adm *kadm.Client, ends kadm.ListedOffsets) (map[string]map[int32]int64, error) {
	starts, err := adm.ListStartOffsets(ctx, f.topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, err
	}
	// A topic's ID is what tells the store of a topic deleted and created
	// again from the one it holds: without it, the store is not judged.
	topics, err := adm.ListTopics(ctx, f.topics...)
	if err == nil {
		err = topics.Error()
	}
	if err != nil {
		return nil, err
	}
	var parts []Bounds
	var missing error
	ends.Each(func(o kadm.ListedOffset) {
		start, ok := starts.Lookup(o.Topic, o.Partition)
		if !ok {
			missing = fmt.Errorf("no first offset listed for %s/%d", o.Topic, o.Partition)
			return
		}
		parts = append(parts, Bounds{Topic: o.Topic, TopicID: topics[o.Topic].ID, Partition: o.Partition, Start: start.Offset, End: o.Offset})
	})
	if missing != nil {
		return nil, missing
	}
	return f.stored.Resume(ctx, parts)
}

// applyRetrying applies one record, retrying while the failure may pass. It
// returns false if ctx ended first.
func applyRetrying(ctx context.Context, log *slog.Logger, r *kgo.Record, apply func(context.Context, *kgo.Record) error) bool {
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		err := apply(ctx, r)
		if _, never := errors.AsType[*schemas.RecordError](err); err == nil || never {
			if err != nil {
				log.Debug("skipping unreadable record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
					"key", string(r.Key), "err", err)
			}
			return true
		}
		log.Warn("record not applied to the view yet, retrying", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
			"key", string(r.Key), "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
	}
}

func (f *Follower) setPosition(topic string, partition int32, next int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.position[topic] == nil {
		f.position[topic] = make(map[int32]int64)
	}
	f.position[topic][partition] = next
}

// noteCaughtUp notes, once a poll's records are applied, when the view has
// caught up with the ends it saw at the start: once a poll, not once a
// record, since it looks at every partition.
func (f *Follower) noteCaughtUp(ends map[string]map[int32]int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.caughtUp && f.reached(ends) {
		f.caughtUp = true
	}
}

// reached reports whether the position is at the ends; f.mu is held.
func (f *Follower) reached(ends map[string]map[int32]int64) bool {
	for topic, parts := range ends {
		for p, end := range parts {
			if f.position[topic][p] < end {
				return false
			}
		}
	}
	return true
}

// CaughtUp reports whether the view has read everything that was
// committed when it started: until then its figures are not the shop's.
func (f *Follower) CaughtUp() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.caughtUp
}

// saveTimeout bounds a checkpoint, also at shutdown.
const saveTimeout = 10 * time.Second

// save checkpoints the state at the current position, if it changed, and
// reports whether it did. A checkpoint is not cut short by shutdown: the
// last one is what the next start begins from.
func (f *Follower) save(ctx context.Context, dirty bool) bool {
	if f.cps == nil || !dirty {
		return false
	}
	state, err := f.state.Snapshot()
	if err != nil {
		f.log.Warn("checkpoint not taken", "err", err)
		return false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	if err := f.cps.Save(ctx, Checkpoint{Offsets: f.Position(), State: state}); err != nil {
		f.log.Warn("checkpoint not saved", "err", err)
		return false
	}
	return true
}

// Position is the next offset to read of every partition read so far.
func (f *Follower) Position() map[string]map[int32]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]map[int32]int64, len(f.position))
	for t, parts := range f.position {
		out[t] = make(map[int32]int64, len(parts))
		for p, o := range parts {
			out[t][p] = o
		}
	}
	return out
}

// Client is the follower's Kafka client, for health checks.
func (f *Follower) Client() *kgo.Client { return f.cl }
