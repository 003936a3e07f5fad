// Command kafkacheck waits until a Kafka cluster can run the shop, printing
// what it still waits for. scripts/kafka-up calls it twice: once before
// creating the topics (so they get all three replicas), once at the end.
//
//	kafkacheck -brokers 3                 3 brokers in metadata
//	kafkacheck -brokers 3 -topics -group -txn
//	    ... and every partition of the shop's topics has a leader and a full
//	    ISR, a group coordinator answers, a transactional producer initialises
//
// Seeds come from KAFKA_BROKERS (default localhost:9092,9093,9094). Exit 0
// when ready, 1 on -timeout.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/target"
)

func main() {
	want := flag.Int("brokers", 3, "brokers that must be in the cluster metadata")
	group := flag.Bool("group", false, "also wait until a group coordinator answers (creates __consumer_offsets)")
	txn := flag.Bool("txn", false, "also wait until a transactional producer can initialise")
	topics := flag.Bool("topics", false, "also wait until every partition of the shop's topics has a leader and a full ISR")
	warmFor := flag.Duration("warm", 0, "then run transactions for this long, so the brokers' JIT compiles their path (warm.go)")
	timeout := flag.Duration("timeout", 3*time.Minute, "give up after this long")
	flag.Parse()

	on = target.FromEnv() // the admin's credentials too, in secure mode
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	start := time.Now()
	checks := []struct {
		name string
		on   bool
		fn   func(context.Context) (string, bool)
	}{
		{fmt.Sprintf("%d brokers in metadata", *want), true, func(ctx context.Context) (string, bool) {
			return brokersUp(ctx, *want)
		}},
		{"topics replicated", *topics, topicsReplicated},
		{"group coordinator", *group, groupCoordinator},
		{"transactional producer", *txn, txnInit},
	}
	for _, c := range checks {
		if !c.on {
			continue
		}
		if err := waitFor(ctx, c.name, c.fn); err != nil {
			fmt.Fprintf(os.Stderr, "kafkacheck: %s: %v after %s\n", c.name, err, time.Since(start).Round(time.Second))
			os.Exit(1)
		}
	}
	if *warmFor > 0 {
		if err := warm(context.Background(), *warmFor); err != nil {
			fmt.Fprintf(os.Stderr, "kafkacheck: warm-up: %v\n", err)
			os.Exit(1)
		}
	}
}

// waitFor retries fn until it reports ready, printing its status when it
// changes and at least every 10 seconds.
func waitFor(ctx context.Context, name string, fn func(context.Context) (string, bool)) error {
	var last string
	var lastPrint time.Time
	for {
		tryCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		status, ok := fn(tryCtx)
		cancel()
		if ok {
			fmt.Printf("kafkacheck: %s: %s\n", name, status)
			return nil
		}
		if status != last || time.Since(lastPrint) > 10*time.Second {
			fmt.Printf("kafkacheck: waiting for %s: %s\n", name, status)
			last, lastPrint = status, time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready (%s)", status)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// on is the cluster checked: KAFKA_BROKERS, with the admin's credentials in
// secure mode.
var on target.Target

// admin connects a client of the cluster checked, with opts.
func admin(opts ...kgo.Opt) (*kgo.Client, *kadm.Client, error) {
	cl, err := kgo.NewClient(append(on.Kafka(), opts...)...)
	if err != nil {
		return nil, nil, err
	}
	return cl, kadm.NewClient(cl), nil
}

func brokersUp(ctx context.Context, want int) (string, bool) {
	cl, adm, err := admin()
	if err != nil {
		return err.Error(), false
	}
	defer cl.Close()
	meta, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return "no metadata yet: " + err.Error(), false
	}
	var ids []string
	for _, b := range meta.Brokers {
		ids = append(ids, fmt.Sprintf("%d@%s:%d", b.NodeID, b.Host, b.Port))
	}
	slices.Sort(ids)
	status := fmt.Sprintf("%d/%d [%s] cluster=%s", len(ids), want, strings.Join(ids, " "), meta.Cluster)
	if len(ids) < want {
		return status, false
	}
	// A broker killed a moment ago stays in the metadata until its
	// session times out: ask every listed broker itself to answer.
	versions, err := adm.ApiVersions(ctx)
	if err != nil {
		return status + "; " + err.Error(), false
	}
	for _, v := range versions {
		if v.Err != nil {
			return fmt.Sprintf("%s; broker %d does not answer: %v", status, v.NodeID, v.Err), false
		}
	}
	return status, true
}

func topicsReplicated(ctx context.Context) (string, bool) {
	cl, adm, err := admin()
	if err != nil {
		return err.Error(), false
	}
	defer cl.Close()
	details, err := adm.ListTopics(ctx, schemas.TopicNames()...)
	if err != nil {
		return err.Error(), false
	}
	var behind []string
	parts := 0
	for _, topic := range schemas.TopicNames() {
		d, ok := details[topic]
		if !ok || d.Err != nil {
			behind = append(behind, topic+" missing")
			continue
		}
		for _, p := range d.Partitions.Sorted() {
			parts++
			if p.Err != nil || p.Leader < 0 || len(p.ISR) < len(p.Replicas) {
				behind = append(behind, fmt.Sprintf("%s/%d leader=%d isr=%v replicas=%v", topic, p.Partition, p.Leader, p.ISR, p.Replicas))
			}
		}
	}
	if len(behind) > 0 {
		return strings.Join(behind, "; "), false
	}
	return fmt.Sprintf("%d topics, %d partitions, every ISR full", len(schemas.TopicNames()), parts), true
}

// groupCoordinator finds the coordinator of a consumer group, which needs the
// offsets topic: the first service to join a group then does not wait for it.
func groupCoordinator(ctx context.Context) (string, bool) {
	cl, adm, err := admin()
	if err != nil {
		return err.Error(), false
	}
	defer cl.Close()
	resp := adm.FindGroupCoordinators(ctx, "shop-kafka-up-check")
	for _, c := range resp {
		if c.Err != nil {
			return c.Err.Error(), false
		}
		return fmt.Sprintf("broker %d", c.NodeID), true
	}
	return "no answer", false
}

// txnInit initialises a transactional producer the way every exactly-once
// service does at start: the transaction coordinator must be elected and the
// transaction state log writable (replication 3, min ISR 2).
func txnInit(ctx context.Context) (string, bool) {
	cl, _, err := admin(kgo.TransactionalID("shop-kafka-up-check"), kgo.TransactionTimeout(10*time.Second))
	if err != nil {
		return err.Error(), false
	}
	defer cl.Close()
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		return err.Error(), false
	}
	return fmt.Sprintf("producer id %d epoch %d", id, epoch), true
}
