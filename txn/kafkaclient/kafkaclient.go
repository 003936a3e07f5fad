// Package kafkaclient is what every Kafka client of the runtime shares, the
// engine's, the views', the sink's and the registry's writer: the settings
// they are built with (FetchMaxWait, TransactionsV1), what the errors of a
// poll mean (CheckFetches, ErrFenced), and how a static member leaves its
// group (LeaveGroup).
package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// FetchMaxWait bounds how long a broker holds a fetch that finds nothing
// new (Kafka's default is 500 ms): a read_committed reader learns of a
// commit only from its next fetch, so this bounds how late the next stage
// and the views see it, at the price of a few idle fetches a second.
const FetchMaxWait = 50 * time.Millisecond

// TransactionsV1 keeps a transactional client on Kafka's transactions
// version 1 (KIP-98: the client adds partitions to the transaction with
// AddPartitionsToTxn), even on a Kafka 4 cluster that finalized version 2
// (KIP-890), by capping Produce at v11: franz-go uses version 2 only with
// Produce v12, and then pins EndTxn to v4 itself.
//
// Why: under version 2 the leader of a partition adds it to the
// transaction on the first produce, and the coordinator answers
// CONCURRENT_TRANSACTIONS while the previous transaction still writes its
// markers. franz-go (v1.22) resends such a batch only after a metadata
// refresh, which waits out MetadataMinAge, 5 s by default; the batches
// pipelined behind it came back OUT_OF_ORDER_SEQUENCE_NUMBER (a new epoch
// must start at sequence 0). Measured on Kafka 4.4: transactions stood
// still for seconds, payment to email p50 8 to 26 s. Under version 1 the
// client's own AddPartitionsToTxn meets CONCURRENT_TRANSACTIONS instead,
// and retries it every 20 ms. The cost: version 2's epoch bump at every
// end, which fences a late produce of the previous transaction; the engine
// waits for every produce before it ends one, and aborts and rewinds after
// an end that failed, so no produce of it can land later.
func TransactionsV1() kgo.Opt {
	v := kversion.Stable()
	v.SetMaxKeyVersion(int16(kmsg.Produce), 11)
	return kgo.MaxVersions(v)
}

// ErrFenced means another instance took over this transactional ID, or this
// static member's instance ID: this one must stop, or it would commit stale
// work.
var ErrFenced = errors.New("txn: fenced by a newer instance with the same transactional ID")

// CheckFetches logs the errors of a poll. It returns ErrFenced when the
// group refused this member because another one joined with the same
// instance ID: the newer instance has the partitions for good, and this one
// would otherwise try to join again forever, holding nothing.
func CheckFetches(fetches kgo.Fetches, log *slog.Logger) error {
	var fencedErr error
	fetches.EachError(func(topic string, partition int32, err error) {
		switch {
		case errors.Is(err, kerr.FencedInstanceID):
			fencedErr = err
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			// A poll that reaches its deadline or shutdown is not a failure.
		default:
			log.Warn("fetch failed", "topic", topic, "partition", partition, "err", err)
		}
	})
	if fencedErr != nil {
		return fmt.Errorf("%w: %v", ErrFenced, fencedErr)
	}
	return nil
}

// LeaveGroup takes a static member out of its group: a static member's
// client does not leave on close, which would strand its partitions until
// the session times out.
func LeaveGroup(brokers []string, connect []kgo.Opt, group, instanceID string, log *slog.Logger) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, connect...)...)
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).LeaveGroup(ctx, kadm.LeaveGroup(group).InstanceIDs(instanceID)); err != nil {
		log.Warn("leaving the group", "group", group, "instance", instanceID, "err", err)
	}
}
