package view_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn/view"
)

func cluster(t *testing.T, topic string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// The latest checkpoint comes back whole, however large, and a checkpoint
// that was never committed is never loaded.
func TestCheckpointsLoadTheLatestCommitted(t *testing.T) {
	const topic = "view-checkpoints"
	brokers := cluster(t, topic)
	ctx := context.Background()
	cps, err := view.OpenCheckpoints(brokers, topic, "1")
	if err != nil {
		t.Fatal(err)
	}
	defer cps.Close()
	if cp, err := cps.Load(ctx); err != nil || cp != nil {
		t.Fatalf("Load on an empty topic = %v, %v; want none", cp, err)
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), 200_000) // 3.2 MB: seven chunks
	want := view.Checkpoint{Offsets: map[string]map[int32]int64{"payments": {0: 10, 1: 20}}, State: big}
	for i := range 3 { // older checkpoints first; the last one counts
		cp := want
		cp.Offsets = map[string]map[int32]int64{"payments": {0: int64(i)}}
		cp.State = []byte{byte(i)}
		if err := cps.Save(ctx, cp); err != nil {
			t.Fatal(err)
		}
	}
	if err := cps.Save(ctx, want); err != nil {
		t.Fatal(err)
	}

	// A checkpoint cut short: chunks and a manifest in a transaction that
	// aborts.
	w, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID("view-2"), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := w.ProduceSync(ctx, &kgo.Record{Key: []byte("x/0"), Value: []byte("junk")},
		&kgo.Record{Key: []byte("manifest"), Value: []byte(`{"save":"x","first":0,"chunks":1}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := w.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}

	again, err := view.OpenCheckpoints(brokers, topic, "1")
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	got, err := again.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || !bytes.Equal(got.State, want.State) || !reflect.DeepEqual(got.Offsets, want.Offsets) {
		n := 0
		if got != nil {
			n = len(got.State)
		}
		t.Fatalf("loaded %d bytes, offsets %v; want the last committed checkpoint, %d bytes, %v", n, got, len(want.State), want.Offsets)
	}
}

// slowManifest holds the acknowledgement of the next manifest it sees, once
// armed, for longer than the writer's transaction timeout.
type slowManifest struct {
	armed atomic.Bool
	hold  time.Duration
}

func (h *slowManifest) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	if err == nil && string(r.Key) == "manifest" && h.armed.CompareAndSwap(true, false) {
		time.Sleep(h.hold)
	}
}

// A checkpoint whose transaction outlives its timeout, as when its
// coordinator's broker dies, is aborted by the coordinator, which refuses
// the commit: PRODUCER_FENCED under transactions version 1,
// INVALID_TXN_STATE under version 2. The writer cannot go on after that.
// The checkpoint is lost, but the next one must be saved, and loaded.
func TestCheckpointAfterATimedOutOne(t *testing.T) {
	const topic = "view-checkpoints"
	brokers := cluster(t, topic)
	ctx := context.Background()
	slow := &slowManifest{hold: 2 * time.Second}
	cps, err := view.OpenCheckpoints(brokers, topic, "1", kgo.TransactionTimeout(time.Second), kgo.WithHooks(slow))
	if err != nil {
		t.Fatal(err)
	}
	defer cps.Close()

	slow.armed.Store(true)
	lost := view.Checkpoint{Offsets: map[string]map[int32]int64{"payments": {0: 1}}, State: []byte("lost")}
	if err := cps.Save(ctx, lost); !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("the checkpoint held past its timeout saved with %v, want PRODUCER_FENCED or INVALID_TXN_STATE", err)
	}
	next := view.Checkpoint{Offsets: map[string]map[int32]int64{"payments": {0: 2}}, State: []byte("next")}
	if err := cps.Save(ctx, next); err != nil {
		t.Fatalf("the checkpoint after the timed-out one: %v", err)
	}
	got, err := cps.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || string(got.State) != "next" || !reflect.DeepEqual(got.Offsets, next.Offsets) {
		t.Fatalf("loaded %+v, want the checkpoint after the timed-out one", got)
	}
}
