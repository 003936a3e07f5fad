// Package kafkaclient is what every Kafka client of the runtime shares, the
// engine's, the views', the sink's and the registry's writer: the settings
// they are built with (FetchMaxWait, Transactions), what the errors of a
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
)

// FetchMaxWait bounds how long a broker holds a fetch that finds nothing
// new (Kafka's default is 500 ms): a read_committed reader learns of a
// commit only from its next fetch, so this bounds how late the next stage
// and the views see it, at the price of a few idle fetches a second.
const FetchMaxWait = 50 * time.Millisecond

// Transactions is what every transactional client adds to its options.
//
// On a Kafka 4 cluster, which finalizes transactions version 2 (KIP-890),
// franz-go uses it: the leader of a partition adds it to the transaction at
// the first produce, and every end bumps the producer epoch, which fences a
// late produce of the previous transaction, a zombie's. While the previous
// transaction still writes its markers, the coordinator answers that first
// produce CONCURRENT_TRANSACTIONS; the broker retries on its own for
// add.partitions.to.txn.retry.backoff.max.ms (100 ms by default; make
// kafka-up and the Docker stack set 2 s, longer than markers take on a
// busy machine), and only then tells the client. franz-go resends such a
// batch after a metadata refresh, no sooner than MetadataMinAge after the
// last one: 5 s by default, which stood transactions still for seconds on
// Kafka 4.4 and is 250 ms here. The batches pipelined behind the refused one
// come back OUT_OF_ORDER_SEQUENCE_NUMBER (a new epoch starts at sequence 0)
// and are resent after it; the broker logs them as errors.
func Transactions() kgo.Opt {
	return kgo.MetadataMinAge(250 * time.Millisecond)
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
