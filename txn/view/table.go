package view

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn/store"
)

// Table is a compacted topic read as a map: the latest value of each key.
// It reads the topic to its end before it is ready, then follows it, so
// that what other instances write shows here within a fetch; Put writes
// through and shows here at once. The state lives in Kafka, as a Kafka
// Streams table does in its changelog; the table keeps it on disk, in a
// memory of the instance's store, with the offsets it covers, so that a
// restart reads only the tail after them. A store that is missing, or that
// does not match the topic (another topic ID, offsets outside the topic's
// bounds), is rebuilt from the topic, and the log says which.
//
// Only what the follower read (committed, in order) goes to disk, with its
// offsets, in one batch a poll: a process killed between Kafka's
// acknowledgement of a Put and the follower's write finds the store
// behind, and reads the tail again.
type Table struct {
	topic  string
	follow *Follower
	writer *kgo.Client
	mem    *store.Memory
	log    *slog.Logger

	// batch holds what the follower applied of the current poll, for
	// the follower's goroutine only.
	batch   []store.Entry
	batchAt map[int32]int64 // next offset, per partition, of the batch
	topicID [16]byte

	mu      sync.RWMutex
	covered map[int32]int64 // what the store holds, per partition
	// pending holds what Put wrote and the follower has not written to
	// the store yet: at most maxPending keys.
	pending  map[string]pendingPut
	overflow bool // pending was full at the last Put: said once
}

type pendingPut struct {
	value  []byte // nil: deleted
	part   int32
	offset int64
}

// maxPending bounds the keys Put shows before the follower has them: past
// it a Put's value shows once the follower reads it, within a fetch, as
// another instance's do.
const maxPending = 1 << 16

// batchMax is the most entries written to the store in one batch, while
// the table reads a long history.
const batchMax = 4096

// OpenTable connects a table on topic, kept in mem; opts are extra client
// options, such as the cluster's credentials.
func OpenTable(brokers []string, topic string, mem *store.Memory, log *slog.Logger, opts ...kgo.Opt) (*Table, error) {
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
	t := &Table{topic: topic, follow: f, writer: w, mem: mem, log: log,
		batchAt: make(map[int32]int64), covered: make(map[int32]int64), pending: make(map[string]pendingPut)}
	f.Stored(t)
	return t, nil
}

// Run follows the topic until ctx is cancelled.
func (t *Table) Run(ctx context.Context) error {
	defer t.writer.Close()
	return t.follow.Run(ctx, t.apply)
}

// Ready reports whether the table holds everything committed when it
// started.
func (t *Table) Ready() bool { return t.follow.CaughtUp() }

// Get returns the value of key; an error is the store's, which could not
// be read.
func (t *Table) Get(key string) ([]byte, bool, error) {
	t.mu.RLock()
	p, ok := t.pending[key]
	t.mu.RUnlock()
	if ok {
		return p.value, p.value != nil, nil
	}
	// What is not pending is in the store: the follower's write and the
	// end of the pending value it covers are one step under mu.
	v, _, ok, err := t.mem.Get([]byte(key))
	return v, ok, err
}

// Put writes value under key, acknowledged by every in-sync replica, and
// shows it here at once. A nil value deletes the key (a tombstone, which
// compaction turns into nothing).
func (t *Table) Put(ctx context.Context, key string, value []byte) error {
	r := &kgo.Record{Key: []byte(key), Value: value}
	if err := t.writer.ProduceSync(ctx, r).FirstErr(); err != nil {
		return err
	}
	t.showPut(r)
	return nil
}

// showPut shows what Put wrote until the follower has it in the store,
// unless it has already.
func (t *Table) showPut(r *kgo.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r.Offset < t.covered[r.Partition] {
		return
	}
	if len(t.pending) >= maxPending {
		if !t.overflow {
			t.log.Warn("table: too many writes not yet read back; the next show once the follower reads them",
				"topic", t.topic, "pending", len(t.pending))
		}
		t.overflow = true
		return
	}
	t.overflow = false
	t.pending[string(r.Key)] = pendingPut{value: r.Value, part: r.Partition, offset: r.Offset}
}

// apply is the follower's: the log's records in order, gathered into the
// batch the next write to the store takes.
func (t *Table) apply(_ context.Context, r *kgo.Record) error {
	// A full batch is written first: when the write fails, the follower
	// calls apply again with the same record, which is then added once.
	if len(t.batch) >= batchMax {
		if err := t.write(t.batchAt); err != nil {
			return err
		}
	}
	e := store.Entry{Key: r.Key, Value: r.Value, At: r.Timestamp, Partition: r.Partition, Delete: r.Value == nil}
	t.batch = append(t.batch, e)
	t.batchAt[r.Partition] = r.Offset + 1
	return nil
}

// Applied writes the poll's records to the store, with the position of the
// follower as the offsets they cover.
func (t *Table) Applied(_ context.Context, position map[string]map[int32]int64) error {
	return t.write(position[t.topic])
}

// write writes the batch and the offsets it brings the store to, and ends
// the pending values the store now covers.
func (t *Table) write(next map[int32]int64) error {
	marks := make(map[int32]store.Mark, len(next))
	for p, o := range next {
		marks[p] = store.Mark{Next: o, Topic: t.topicID}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.mem.Write(t.batch, marks); err != nil {
		return err
	}
	clear(t.batch)
	t.batch = t.batch[:0]
	for p, o := range next {
		t.covered[p] = o
	}
	for key, p := range t.pending {
		if p.offset < t.covered[p.part] {
			delete(t.pending, key)
		}
	}
	return nil
}

// Resume is the follower's: it starts each partition after what the store
// covers, or from the start when the store holds nothing of it or does
// not match the topic, which it then forgets.
func (t *Table) Resume(_ context.Context, parts []Bounds) (map[string]map[int32]int64, error) {
	from := make(map[int32]int64)
	var stale []int32
	reasons := make(map[int32]string)
	held := 0 // partitions the store has something of
	tail := int64(0)
	for _, b := range parts {
		t.topicID = b.TopicID
		mark, ok, err := t.mem.Covered(b.Partition)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		switch mark.Against(b.TopicID, b.Start, b.End) {
		case store.OtherTopic:
			reasons[b.Partition] = fmt.Sprintf("written from another topic ID (%x, the topic's is %x)", mark.Topic, b.TopicID)
		case store.BehindStart, store.PastEnd:
			reasons[b.Partition] = fmt.Sprintf("covers up to offset %d, outside the topic's offsets %d to %d", mark.Next, b.Start, b.End)
		default:
			from[b.Partition] = mark.Next
			tail += b.End - mark.Next
		}
		held++
		if _, bad := reasons[b.Partition]; bad {
			stale = append(stale, b.Partition)
		}
	}
	switch {
	case held == 0:
		t.log.Info("table rebuilt from Kafka: the store holds nothing of the topic", "topic", t.topic)
		// What a store may hold of another layout or a partition gone is
		// dropped with it.
		return nil, t.mem.Reset()
	case len(stale) == held:
		t.log.Warn("table rebuilt from Kafka: the store is stale", "topic", t.topic, "why", reasons)
		return nil, t.mem.Reset()
	case len(stale) > 0:
		t.log.Warn("table partitions rebuilt from Kafka: the store is stale for them", "topic", t.topic, "why", reasons)
		for _, p := range stale {
			if err := t.mem.Forget(p); err != nil {
				return nil, err
			}
		}
	}
	t.mu.Lock()
	for p, o := range from {
		t.covered[p] = o
	}
	t.mu.Unlock()
	t.log.Info("table resumed from its store", "topic", t.topic, "offsets", from, "records_to_read", tail)
	return map[string]map[int32]int64{t.topic: from}, nil
}

// Expire forgets the keys written before before, at most step of them:
// each gets a tombstone in Kafka first, so that compaction drops it from
// the topic too and no instance can read it back, then leaves the store
// with its index. It returns how many it went through; fewer than step
// means none older is left.
func (t *Table) Expire(ctx context.Context, before time.Time, step int) (int, error) {
	keys, err := t.mem.Expiring(before, step)
	if err != nil {
		return 0, err
	}
	if len(keys) > 0 {
		recs := make([]*kgo.Record, len(keys))
		for i, k := range keys {
			recs[i] = &kgo.Record{Key: k}
		}
		if err := t.writer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return 0, err
		}
		for _, r := range recs {
			t.showPut(r)
		}
	}
	return t.mem.Expire(before, step)
}
