package view_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn/store"
	"github.com/blackfriday-kafka/shop/txn/view"
)

const requests = "requests"

type tableEnv struct {
	t       *testing.T
	cluster *kfake.Cluster
	writer  *kgo.Client
}

func newTableEnv(t *testing.T) *tableEnv {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, requests))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	w, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(requests))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return &tableEnv{t: t, cluster: c, writer: w}
}

// produce writes keys from to to-1, each with value v<i>, written at at.
func (e *tableEnv) produce(from, to int, at time.Time) {
	e.t.Helper()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i), Timestamp: at})
	}
	if err := e.writer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
}

// running is a table on its store, read to its end.
type running struct {
	*view.Table
	store *store.Store
	log   *lockedBuffer
	stop  func()
}

// start opens the store in dir and a table on it, and waits until the
// table is ready.
func (e *tableEnv) start(dir string) *running {
	e.t.Helper()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	log := &lockedBuffer{}
	tb, err := view.OpenTable(e.cluster.ListenAddrs(), requests, st.Memory(requests), slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tb.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			e.t.Error(err)
		}
		if err := st.Close(); err != nil {
			e.t.Error(err)
		}
	}
	e.t.Cleanup(stop)
	for deadline := time.Now().Add(20 * time.Second); !tb.Ready(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			e.t.Fatalf("table not ready; log:\n%s", log)
		}
	}
	return &running{Table: tb, store: st, log: log, stop: stop}
}

func (r *running) want(t *testing.T, key, value string) {
	t.Helper()
	v, ok, err := r.Get(key)
	if err != nil || (value == "") == ok || string(v) != value {
		t.Fatalf("%s = %q, %v, %v; want %q", key, v, ok, err, value)
	}
}

func TestTableRestartReadsOnlyTheTail(t *testing.T) {
	e := newTableEnv(t)
	dir := t.TempDir()
	e.produce(0, 300, time.Now())
	first := e.start(dir)
	if !strings.Contains(first.log.String(), "rebuilt from Kafka: the store holds nothing") {
		t.Fatalf("a first start on an empty dir must say it rebuilds; log:\n%s", first.log)
	}
	first.want(t, "k299", "v299")
	first.stop()

	e.produce(300, 310, time.Now())
	second := e.start(dir)
	if !strings.Contains(second.log.String(), "records_to_read=10") {
		t.Fatalf("a restart read more than the 10 records written since; log:\n%s", second.log)
	}
	second.want(t, "k0", "v0")
	second.want(t, "k309", "v309")
	second.stop()

	// The control: without the store, the start reads everything.
	third := e.start(t.TempDir())
	if strings.Contains(third.log.String(), "records_to_read") {
		t.Fatalf("a start without a store claims to resume; log:\n%s", third.log)
	}
	third.want(t, "k309", "v309")
}

// ghost puts into the store of dir a key Kafka never had, and sets the
// covered offset of partition 0 to next (or leaves it where it is, when
// next is negative).
func ghost(t *testing.T, dir string, next int64) {
	t.Helper()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mem := st.Memory(requests)
	mark, ok, err := mem.Covered(0)
	if err != nil || !ok {
		t.Fatalf("covered 0: %v, %v", ok, err)
	}
	if next >= 0 {
		mark.Next = next
	}
	if err := mem.Write([]store.Entry{{Key: []byte("ghost"), Value: []byte("boo"), At: time.Now()}},
		map[int32]store.Mark{0: mark}); err != nil {
		t.Fatal(err)
	}
}

func TestStaleStoreIsRebuiltExact(t *testing.T) {
	e := newTableEnv(t)
	dir := t.TempDir()
	e.produce(0, 100, time.Now())
	e.start(dir).stop()

	// The control: a store that matches the topic is trusted, ghost and
	// all (the check below can fail).
	ghost(t, dir, -1)
	trusted := e.start(dir)
	trusted.want(t, "ghost", "boo")
	trusted.stop()

	// Covered beyond the topic's end: stale, rebuilt, the ghost gone.
	ghost(t, dir, 1_000_000)
	rebuilt := e.start(dir)
	if !strings.Contains(rebuilt.log.String(), "rebuilt from Kafka: the store is stale") ||
		!strings.Contains(rebuilt.log.String(), "outside the topic's offsets") {
		t.Fatalf("log of a stale start:\n%s", rebuilt.log)
	}
	rebuilt.want(t, "ghost", "")
	rebuilt.want(t, "k42", "v42")
	rebuilt.want(t, "k99", "v99")
}

func TestStoreOfAnotherTopicIsRebuilt(t *testing.T) {
	e := newTableEnv(t)
	dir := t.TempDir()
	e.produce(0, 50, time.Now())
	e.start(dir).stop()
	ghost(t, dir, -1)

	// The topic deleted and created again, with a shorter history.
	other := newTableEnv(t)
	other.produce(1000, 1001, time.Now())
	e.cluster = other.cluster
	rebuilt := e.start(dir)
	if !strings.Contains(rebuilt.log.String(), "another topic ID") {
		t.Fatalf("log of a start on another topic:\n%s", rebuilt.log)
	}
	rebuilt.want(t, "ghost", "")
	rebuilt.want(t, "k1", "")
	rebuilt.want(t, "k1000", "v1000")
}

func TestPutShowsAtOnceAndExpireTombstones(t *testing.T) {
	e := newTableEnv(t)
	old := time.Now().Add(-48 * time.Hour)
	e.produce(0, 25, old)
	e.produce(25, 30, time.Now())
	r := e.start(t.TempDir())
	if err := r.Put(context.Background(), "mine", []byte("answer")); err != nil {
		t.Fatal(err)
	}
	r.want(t, "mine", "answer") // at once, before the follower reads it back

	before := time.Now().Add(-24 * time.Hour)
	total := 0
	for {
		n, err := r.Expire(context.Background(), before, 10)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if n < 10 {
			break
		}
	}
	if total != 25 {
		t.Fatalf("expiry went through %d keys; want the 25 old ones", total)
	}
	for i := range 25 {
		r.want(t, fmt.Sprintf("k%d", i), "")
	}
	r.want(t, "k25", "v25")
	r.want(t, "mine", "answer")

	// Each expired key has its tombstone in the topic: compaction drops
	// it there too, and no instance reads it back.
	tombstones := map[string]bool{}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.cluster.ListenAddrs()...), kgo.ConsumeTopics(requests),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(tombstones) < 25 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			if rec.Value == nil {
				tombstones[string(rec.Key)] = true
			}
		})
	}
	if len(tombstones) != 25 || tombstones["k25"] {
		t.Fatalf("tombstones for %d keys (%v); want the 25 old ones", len(tombstones), tombstones)
	}
}
