package deadletter_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"reflect"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/schemas/schemastest"
	"github.com/blackfriday-kafka/shop/txn"
	"github.com/blackfriday-kafka/shop/txn/deadletter"
)

func headers(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

// cluster starts the embedded cluster and registry, with topics and
// schemas, until the test ends.
func cluster(t *testing.T) (*infra.Embedded, *schemas.Catalog) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stack, err := infra.StartEmbedded(ctx, infra.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	cat, err := schemas.Connect(ctx, stack.RegistryURL)
	if err != nil {
		t.Fatal(err)
	}
	return stack, cat
}

// logger writes to the test's log.
func logger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

func TestRecordKeepsTheOriginal(t *testing.T) {
	cat := schemastest.Catalog(t)
	l := deadletter.Letters{Codec: schemas.PaymentDLQ.Codec(cat), Service: "order"}
	src := &kgo.Record{Topic: "payment-successful", Partition: 1, Offset: 41, Key: []byte("7"), Value: []byte("{oops")}
	rec, err := l.Record(src, "bad-magic-byte", errors.New("not Avro"))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Topic != "dlq-payment" || string(rec.Key) != "7" {
		t.Fatalf("dead letter goes to %s key %q", rec.Topic, rec.Key)
	}
	want := map[string]string{"error.class": "bad-magic-byte", "error.message": "not Avro",
		"source.topic": "payment-successful", "source.partition": "1", "source.offset": "41"}
	if got := headers(rec); !reflect.DeepEqual(got, want) {
		t.Fatalf("headers = %v, want %v", got, want)
	}
	dl, err := schemas.PaymentDLQ.Codec(cat).Decode(context.Background(), rec.Value)
	if err != nil {
		t.Fatal(err)
	}
	if string(dl.OriginalValue) != "{oops" || dl.SourceOffset != 41 || dl.SourcePartition != 1 || dl.Service != "order" ||
		dl.ErrorClass != "bad-magic-byte" || dl.Truncated || dl.OriginalSize != nil {
		t.Fatalf("dead letter = %+v", dl)
	}
}

// A record too large for its dead letter keeps a prefix, the size and the
// SHA-256 of the whole value, and says so in the value and the headers.
func TestRecordCutsWhatDoesNotFit(t *testing.T) {
	cat := schemastest.Catalog(t)
	l := deadletter.Letters{Codec: schemas.PaymentDLQ.Codec(cat), Service: "order"}
	value := bytes.Repeat([]byte("x"), 999_805)
	src := &kgo.Record{Topic: "payment-successful", Partition: 0, Offset: 3, Key: []byte("7"), Value: value}
	rec, err := l.Record(src, "bad-magic-byte", errors.New("not Avro"))
	if err != nil {
		t.Fatal(err)
	}
	size := len(rec.Key) + len(rec.Value)
	for _, h := range rec.Headers {
		size += len(h.Key) + len(h.Value)
	}
	if size > deadletter.MaxBytes {
		t.Fatalf("dead letter of %d bytes, over the %d limit", size, deadletter.MaxBytes)
	}
	sum := sha256.Sum256(value)
	digest := hex.EncodeToString(sum[:])
	h := headers(rec)
	if h["original.truncated"] != "true" || h["original.size"] != "999805" || h["original.sha256"] != digest {
		t.Fatalf("headers = %v, want the truncation marked with size and digest", h)
	}
	dl, err := schemas.PaymentDLQ.Codec(cat).Decode(context.Background(), rec.Value)
	if err != nil {
		t.Fatal(err)
	}
	if !dl.Truncated || dl.OriginalSize == nil || *dl.OriginalSize != 999_805 || *dl.OriginalSHA256 != digest ||
		len(dl.OriginalValue) == 0 || len(dl.OriginalValue) >= len(value) || !bytes.HasPrefix(value, dl.OriginalValue) ||
		string(dl.OriginalKey) != "7" {
		t.Fatalf("dead letter keeps %d bytes, truncated=%v size=%v: want a prefix with the whole value's size and digest",
			len(dl.OriginalValue), dl.Truncated, dl.OriginalSize)
	}
}

type poison struct{ error }

func (poison) ErrorClass() string { return "validation" }

// TestDeadLettersCommitWithTheirTransaction runs the middleware in the
// engine: poison becomes a dead letter in the same transaction as the rest,
// so one that was written in an aborted transaction is never read
// committed, and the one of the retry is there once.
func TestDeadLettersCommitWithTheirTransaction(t *testing.T) {
	stack, cat := cluster(t)
	ctx := context.Background()
	in, out := schemas.Payments.Name, schemas.Orders.Name
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...), kgo.DefaultProduceTopic(in))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 20 {
		v := strconv.Itoa(i)
		if i == 5 || i == 12 {
			v = "not a number"
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("1"), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// Record 15 fails once, once the dead letter of record 12 is on the
	// log yet invisible to read_committed: it is inside the open
	// transaction, which then aborts and takes it away.
	var failed, inOpenTxn atomic.Bool
	count := func(iso kgo.IsolationLevel) int {
		recs, err := infra.ReadTopic(ctx, stack.Brokers, schemas.PaymentDLQ.Name, iso, 200*time.Millisecond)
		if err != nil {
			t.Error(err)
		}
		return len(recs)
	}
	h := func(_ context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		n, err := strconv.Atoi(string(r.Value))
		if err != nil {
			return nil, poison{err}
		}
		if n == 15 && !failed.Swap(true) {
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
				if count(kgo.ReadUncommitted()) > count(kgo.ReadCommitted()) {
					inOpenTxn.Store(true)
					break
				}
			}
			return nil, errors.New("transient")
		}
		return []*kgo.Record{{Topic: out, Key: r.Key, Value: []byte(strconv.Itoa(2 * n))}}, nil
	}
	letters := deadletter.Letters{Codec: schemas.PaymentDLQ.Codec(cat), Service: "order", Logger: logger(t)}
	var committed atomic.Int64
	e, err := txn.New(txn.Config{
		Brokers: stack.Brokers, Group: "dead-letter-test", Topic: in, TransactionalID: "dead-letter-test",
		Handler: txn.Chain(h, letters.Middleware), MinBackoff: 10 * time.Millisecond,
		Logger: logger(t),
		OnBatch: func(b txn.Batch) {
			if b.Committed {
				committed.Add(int64(b.Records))
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	for deadline := time.Now().Add(30 * time.Second); committed.Load() < 20; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("committed %d of 20 records", committed.Load())
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	outs, err := infra.ReadTopic(ctx, stack.Brokers, out, kgo.ReadCommitted(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := infra.ReadTopic(ctx, stack.Brokers, schemas.PaymentDLQ.Name, kgo.ReadCommitted(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	all, err := infra.ReadTopic(ctx, stack.Brokers, schemas.PaymentDLQ.Name, kgo.ReadUncommitted(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 18 || len(dead) != 2 {
		t.Fatalf("committed %d outputs and %d dead letters, want 18 and 2", len(outs), len(dead))
	}
	for i, d := range dead {
		if h := headers(d); h["error.class"] != "validation" || h["source.offset"] != []string{"5", "12"}[i] {
			t.Fatalf("dead letter %d: headers %v", i, h)
		}
	}
	if !inOpenTxn.Load() || len(all) <= len(dead) {
		t.Fatalf("read_uncommitted sees %d dead letters, read_committed %d: the aborted one should be hidden", len(all), len(dead))
	}
}
