//go:build kafka

package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
	"github.com/blackfriday-kafka/shop/txn"
)

// TestTimedOutTransactionIsNotAFence holds a transaction of the engine
// until its coordinator aborts it for outliving its timeout, as happens when
// the coordinator's broker dies and the next one takes over later than that.
// The coordinator bumps the producer epoch, so Kafka refuses what comes next
// with PRODUCER_FENCED, as it would for a newer instance with the same
// transactional ID. There is none here: each record must end on the output
// exactly once, and the engine must not stop. Kafka refuses either the
// commit, after which the client cannot go on and the engine starts a new
// producer, or the outputs produced after the abort, after which the client
// re-initialises its producer itself.
func TestTimedOutTransactionIsNotAFence(t *testing.T) {
	for _, tc := range []struct {
		name string
		// yields reports whether the held record yields its output
		// after the abort (refused at the produce), or nothing (the
		// commit is refused).
		yields   bool
		renewals int64 // new clients the engine must start
	}{
		{"refused at the commit", false, 1},
		{"refused at the produce", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 50
			name := "kafkatest-timeout-" + uuid.NewString()[:8]
			in, out := name+"-in", name+"-out"
			adm := admin(t)
			ctx := context.Background()
			if _, err := adm.CreateTopics(ctx, 1, 3, nil, in, out); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_, _ = adm.DeleteTopics(context.Background(), in, out)
				_, _ = adm.DeleteGroup(context.Background(), name)
			})
			producer, err := kgo.NewClient(adminOpts()...)
			if err != nil {
				t.Fatal(err)
			}
			defer producer.Close()
			recs := make([]*kgo.Record, n)
			for i := range recs {
				recs[i] = &kgo.Record{Topic: in, Value: []byte(strconv.Itoa(i))}
			}
			if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}

			// The last record waits, with the batch's first outputs
			// written, until the coordinator has aborted its transaction.
			var held atomic.Bool
			aborted := make(chan error, 1)
			copyOf := func(r *kgo.Record) []*kgo.Record {
				return []*kgo.Record{{Topic: out, Value: r.Value}}
			}
			handler := func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
				if string(r.Value) == strconv.Itoa(n-1) && held.CompareAndSwap(false, true) {
					err := waitAborted(ctx, t, name)
					aborted <- err
					if !tc.yields {
						return nil, err
					}
				}
				return copyOf(r), nil
			}
			e, err := txn.New(txn.Config{
				Brokers: brokers, Connect: tools.Connect(),
				Group: name, Topic: in, TransactionalID: name, InstanceID: name,
				Handler: handler, TransactionTimeout: 2 * time.Second,
				Logger: shoptest.Logger(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- e.Run(runCtx) }()
			defer func() {
				stop()
				if err := <-done; err != nil {
					t.Errorf("the engine stopped with: %v", err)
				}
			}()

			select {
			case err := <-aborted:
				if err != nil {
					t.Fatal(err)
				}
			case err := <-done:
				t.Fatalf("the engine stopped before the coordinator aborted its transaction: %v", err)
			case <-time.After(60 * time.Second):
				t.Fatal("the held record was never reached")
			}
			eventually(t, 60*time.Second, func() error {
				select {
				case err := <-done:
					done <- err
					t.Fatalf("the engine stopped after its transaction timed out: %v", err)
				default:
				}
				got, err := infra.ReadTopic(ctx, brokers, out, kgo.ReadCommitted(), time.Second, tools.Connect()...)
				if err != nil {
					return err
				}
				seen := make(map[string]int)
				for _, r := range got {
					seen[string(r.Value)]++
				}
				for i := range n {
					if c := seen[strconv.Itoa(i)]; c != 1 {
						return fmt.Errorf("record %d is on the output %d times, want once (%d records)", i, c, len(got))
					}
				}
				if len(got) != n {
					return fmt.Errorf("the output holds %d records, want %d", len(got), n)
				}
				return nil
			})
			st := e.Stats()
			if st.Renewals != tc.renewals {
				t.Fatalf("the engine replaced its client %d times, want %d", st.Renewals, tc.renewals)
			}
			t.Logf("the coordinator aborted the transaction; all %d records committed once after %d new clients and %d new epochs",
				n, st.Renewals, st.EpochBumps)
		})
	}
}

// waitAborted waits until the coordinator of transactional ID id has
// aborted its ongoing transaction, as its timeout makes it do (Kafka looks
// for timed-out transactions every 10 s by default), and written the abort
// markers: before them, a partition's leader still takes the old epoch, and
// what the test meets would depend on the race.
func waitAborted(ctx context.Context, t *testing.T, id string) error {
	adm := admin(t)
	var last string
	for deadline := time.Now().Add(40 * time.Second); time.Now().Before(deadline); {
		described, err := adm.DescribeTransactions(ctx, id)
		if err == nil {
			if d, ok := described[id]; ok && d.Err == nil {
				last = d.State
				if d.State == "CompleteAbort" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return errors.New("the coordinator never aborted the transaction (last state " + last + ")")
}
