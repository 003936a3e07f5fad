// Package infra is how the shop runs: the topics it needs and, for machines
// without Docker, an embedded stack of a 3-broker Kafka cluster (kfake) and a
// Confluent-compatible schema registry.
package infra

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/schemas"
)

// Partitions is the partition count of every topic: three, so three
// instances of a service can share the load.
const Partitions = 3

// TopicSettings are the replication settings for a cluster of brokers
// brokers: three replicas with two in sync when there are three brokers, so a
// broker can die without losing an acknowledged record.
func TopicSettings(brokers int) (replicas int16, configs map[string]*string) {
	replicas = int16(min(brokers, 3))
	configs = map[string]*string{}
	if replicas == 3 {
		minISR := "2"
		configs["min.insync.replicas"] = &minISR
	}
	return replicas, configs
}

// CreateTopics creates every topic of the shop that does not exist yet.
// Existing topics are left as they are.
func CreateTopics(ctx context.Context, brokers []string, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := CreateTopicsWith(ctx, kadm.NewClient(cl)); err != nil {
		return fmt.Errorf("brokers %v: %w", brokers, err)
	}
	return nil
}

// CreateTopicsWith is CreateTopics through an admin client of the
// caller's, with the caller's credentials.
func CreateTopicsWith(ctx context.Context, adm *kadm.Client) error {
	meta, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return fmt.Errorf("reach brokers: %w", err)
	}
	replicas, configs := TopicSettings(len(meta.Brokers))
	resps, err := adm.CreateTopics(ctx, Partitions, replicas, configs, schemas.TopicNames()...)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	all := resps.Sorted()
	compacted := maps.Clone(configs)
	for k, v := range StateSettings {
		compacted[k] = &v
	}
	for _, t := range schemas.StateTopics() {
		resps, err := adm.CreateTopics(ctx, t.Partitions, replicas, compacted, t.Name)
		if err != nil {
			return fmt.Errorf("create topics: %w", err)
		}
		all = append(all, resps.Sorted()...)
	}
	for _, r := range all {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// StateSettings are the settings of the state topics: compacted, so that
// the latest record of each key stays for good, in segments short enough
// for the cleaner to get at them within minutes.
var StateSettings = map[string]string{
	"cleanup.policy":            "compact",
	"segment.ms":                "600000",
	"min.cleanable.dirty.ratio": "0.1",
}

// RegisterSchemas registers the schema of every topic (idempotent): the one
// step that writes the shop's schemas, run before any service starts.
func RegisterSchemas(ctx context.Context, registryURL string, opts ...sr.ClientOpt) error {
	cl, err := schemas.NewRegistryClient(registryURL, opts...)
	if err != nil {
		return err
	}
	return schemas.RegisterAll(ctx, cl)
}

// EndOffsets are where topics end now, per partition: where a run that
// judges only its own records starts reading.
func EndOffsets(ctx context.Context, brokers []string, topics []string, opts ...kgo.Opt) (map[string]map[int32]kgo.Offset, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error() // a partition whose end was not listed
	}
	if err != nil {
		return nil, err
	}
	from := make(map[string]map[int32]kgo.Offset)
	ends.Each(func(o kadm.ListedOffset) {
		if from[o.Topic] == nil {
			from[o.Topic] = make(map[int32]kgo.Offset)
		}
		from[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
	})
	return from, nil
}

// ReadTopic reads a whole topic from its first offset with isolation iso,
// until a poll has waited idle without a record. Everything committed is
// readable at once, so the idle wait is only there to let extras show: use
// it on topics nothing writes to any more.
func ReadTopic(ctx context.Context, brokers []string, topic string, iso kgo.IsolationLevel, idle time.Duration, opts ...kgo.Opt) ([]*kgo.Record, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(iso)}, opts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var recs []*kgo.Record
	for {
		pctx, cancel := context.WithTimeout(ctx, idle)
		got := cl.PollFetches(pctx).Records()
		cancel()
		if len(got) == 0 {
			return recs, ctx.Err()
		}
		recs = append(recs, got...)
	}
}

// OutOfSync lists the partitions of every topic, Kafka's own too, that have
// no leader or fewer replicas in sync than they have, as each broker of
// the cluster sees them, and counts the partitions: after a broker's
// fault, the cluster is whole again once the list is empty. Every broker
// is asked, because a broker that was paused or cut off answers from its
// own stale view until it has caught up, and that view may be whole.
func OutOfSync(ctx context.Context, brokers []string, opts ...kgo.Opt) (short []string, partitions int, err error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return nil, 0, err
	}
	defer cl.Close()
	meta, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		return nil, 0, err
	}
	seen := map[string]bool{}
	for _, b := range meta.Brokers {
		req := kmsg.NewPtrMetadataRequest() // no topics named: every topic
		req.Topics = nil
		resp, err := req.RequestWith(ctx, cl.Broker(int(b.NodeID)))
		if err != nil {
			short = append(short, fmt.Sprintf("broker %d: %v", b.NodeID, err))
			continue
		}
		n := 0
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				n++
				name := fmt.Sprintf("%s/%d", *t.Topic, p.Partition)
				if e := kerr.ErrorForCode(p.ErrorCode); (e != nil || p.Leader < 0 || len(p.ISR) < len(p.Replicas)) && !seen[name] {
					seen[name] = true
					short = append(short, fmt.Sprintf("%s leader=%d isr=%v replicas=%v (broker %d's view)", name, p.Leader, p.ISR, p.Replicas, b.NodeID))
				}
			}
		}
		partitions = max(partitions, n)
	}
	return short, partitions, nil
}
