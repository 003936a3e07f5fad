package view

import (
	"context"
	"log/slog"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Table is a compacted topic read as a map: the latest value of each key.
// It reads the topic to its end before it is ready, then follows it, so
// that what other instances write shows here within a fetch; Put writes
// through and shows here at once. The state lives in Kafka, as a Kafka
// Streams table does in its changelog: a restarted service has it back.
type Table struct {
	topic  string
	follow *Follower
	writer *kgo.Client

	mu      sync.RWMutex
	entries map[string]entry
}

type entry struct {
	value  []byte
	offset int64 // of the record it comes from, per partition
	part   int32
}

// OpenTable connects a table on topic; opts are extra client options, such
// as the cluster's credentials.
func OpenTable(brokers []string, topic string, log *slog.Logger, opts ...kgo.Opt) (*Table, error) {
	f, err := Follow(brokers, log, []string{topic}, opts...)
	if err != nil {
		return nil, err
	}
	w, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	}, opts...)...)
	if err != nil {
		f.Client().Close()
		return nil, err
	}
	return &Table{topic: topic, follow: f, writer: w, entries: make(map[string]entry)}, nil
}

// Run follows the topic until ctx is cancelled.
func (t *Table) Run(ctx context.Context) error {
	defer t.writer.Close()
	return t.follow.Run(ctx, t.apply)
}

// Ready reports whether the table holds everything committed when it
// started.
func (t *Table) Ready() bool { return t.follow.CaughtUp() }

// Get returns the value of key.
func (t *Table) Get(key string) ([]byte, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.entries[key]
	return e.value, ok && e.value != nil
}

// Range calls fn for every key and value, under a read lock: fn must not
// call the table.
func (t *Table) Range(fn func(key string, value []byte) bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for k, e := range t.entries {
		if e.value != nil && !fn(k, e.value) {
			return
		}
	}
}

// Put writes value under key, acknowledged by every in-sync replica, and
// applies it here. A nil value deletes the key (a tombstone, which
// compaction turns into nothing).
func (t *Table) Put(ctx context.Context, key string, value []byte) error {
	r := &kgo.Record{Key: []byte(key), Value: value}
	if err := t.writer.ProduceSync(ctx, r).FirstErr(); err != nil {
		return err
	}
	t.set(r, true)
	return nil
}

// apply is the follower's: the log's records in order.
func (t *Table) apply(_ context.Context, r *kgo.Record) error {
	t.set(r, false)
	return nil
}

// set applies r unless a newer record of its key was applied already: a
// Put shows at once, before the follower reads the older records before
// it. A deletion by Put stays as a mark until the follower reaches it, so
// that an older value cannot come back in between.
func (t *Table) set(r *kgo.Record, put bool) {
	key := string(r.Key)
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.entries[key]; ok && old.part == r.Partition && old.offset > r.Offset {
		return
	}
	if r.Value == nil && !put {
		delete(t.entries, key)
		return
	}
	t.entries[key] = entry{value: r.Value, offset: r.Offset, part: r.Partition}
}
