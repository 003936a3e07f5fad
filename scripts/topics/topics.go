package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
)

// NewTopics says how topics named on the command line are created. Zero
// values take the shop's settings for the cluster's size.
type NewTopics struct {
	Partitions int32
	Replicas   int16
	Configs    map[string]*string
}

// Create creates topics, or the shop's topics when names is empty, and
// says which were created and which were there already. It is idempotent.
func Create(ctx context.Context, adm *kadm.Client, brokers []string, names []string, nt NewTopics, out io.Writer) error {
	shop := len(names) == 0
	if shop {
		names = schemas.TopicNames()
	}
	before, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("reach brokers %v: %w", brokers, err)
	}
	if shop {
		// One definition of the shop's topics: the one services and
		// `make run` use.
		if err := infra.CreateTopicsWith(ctx, adm); err != nil {
			return err
		}
	} else {
		meta, err := adm.BrokerMetadata(ctx)
		if err != nil {
			return err
		}
		// The shop's settings, for the cluster's size or the
		// replication factor asked for: min.insync.replicas=2 with
		// three replicas, nothing that would refuse writes with fewer.
		replicas, configs := infra.TopicSettings(len(meta.Brokers))
		if nt.Replicas > 0 {
			replicas = nt.Replicas
			_, configs = infra.TopicSettings(int(replicas))
		}
		if nt.Partitions <= 0 {
			nt.Partitions = infra.Partitions
		}
		for k, v := range nt.Configs {
			configs[k] = v
		}
		resps, err := adm.CreateTopics(ctx, nt.Partitions, replicas, configs, names...)
		if err != nil {
			return err
		}
		for _, r := range resps.Sorted() {
			if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
				return fmt.Errorf("create topic %s: %w %s", r.Topic, r.Err, r.ErrMessage)
			}
		}
	}
	var created, existed []string
	for _, n := range names {
		if d, ok := before[n]; ok && d.Err == nil {
			existed = append(existed, n)
		} else {
			created = append(created, n)
		}
	}
	if len(created) > 0 {
		fmt.Fprintf(out, "created: %s\n", strings.Join(created, ", "))
	}
	if len(existed) > 0 {
		fmt.Fprintf(out, "already there: %s\n", strings.Join(existed, ", "))
	}
	fmt.Fprintf(out, "topics: %s ready on %s\n", strings.Join(names, ", "), strings.Join(brokers, ","))
	return nil
}

// List prints every topic with its partition count and replication factor.
func List(ctx context.Context, adm *kadm.Client, internal bool, out io.Writer) error {
	list := adm.ListTopics
	if internal {
		list = adm.ListTopicsWithInternal
	}
	topics, err := list(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tREPLICAS")
	for _, t := range topics.Sorted() {
		if errors.Is(t.Err, kerr.UnknownTopicOrPartition) {
			continue // being deleted, or only ever asked about
		}
		if t.Err != nil {
			fmt.Fprintf(tw, "%s\t%v\t\n", t.Topic, t.Err)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\n", t.Topic, len(t.Partitions), t.Partitions.NumReplicas())
	}
	return tw.Flush()
}

// Describe prints, for each topic (the shop's when names is empty), its
// non-default configs (all with allConfigs) and, per partition, the leader,
// the replicas, the in-sync replicas, offline replicas and the offsets the
// log spans.
func Describe(ctx context.Context, adm *kadm.Client, names []string, allConfigs bool, out io.Writer) error {
	if len(names) == 0 {
		names = schemas.TopicNames()
	}
	topics, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return err
	}
	configs, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return fmt.Errorf("describe configs: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, names...)
	if err != nil {
		return fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return fmt.Errorf("list end offsets: %w", err)
	}
	var missing []string
	for i, name := range names {
		t, ok := topics[name]
		if !ok || t.Err != nil {
			missing = append(missing, name)
			continue
		}
		if i > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "%s  partitions=%d replicas=%d id=%s\n", name, len(t.Partitions), t.Partitions.NumReplicas(), t.ID)
		if rc, err := configs.On(name, nil); err == nil && rc.Err == nil {
			fmt.Fprintf(out, "  configs: %s\n", configLine(rc.Configs, allConfigs))
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  PARTITION\tLEADER\tREPLICAS\tISR\tOFFLINE\tSTART\tEND")
		for _, p := range t.Partitions.Sorted() {
			start, end := "?", "?"
			if o, ok := starts.Lookup(name, p.Partition); ok && o.Err == nil {
				start = strconv.FormatInt(o.Offset, 10)
			}
			if o, ok := ends.Lookup(name, p.Partition); ok && o.Err == nil {
				end = strconv.FormatInt(o.Offset, 10)
			}
			leader := strconv.Itoa(int(p.Leader))
			if p.Err != nil {
				leader += " (" + p.Err.Error() + ")"
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Partition, leader, ids(p.Replicas), ids(p.ISR), ids(p.OfflineReplicas), start, end)
		}
		tw.Flush()
	}
	if len(missing) > 0 {
		return fmt.Errorf("no such topic: %s", strings.Join(missing, ", "))
	}
	return nil
}

// configLine is the configs as key=value pairs: those set on the topic,
// or every one with all.
func configLine(cs []kadm.Config, all bool) string {
	var pairs []string
	for _, c := range cs {
		if !all && c.Source != kmsg.ConfigSourceDynamicTopicConfig {
			continue
		}
		v := c.MaybeValue()
		if c.Sensitive {
			v = "(sensitive)"
		}
		pairs = append(pairs, c.Key+"="+v)
	}
	slices.Sort(pairs)
	if len(pairs) == 0 {
		return "(cluster defaults)"
	}
	return strings.Join(pairs, " ")
}

func ids(bs []int32) string {
	if len(bs) == 0 {
		return "-"
	}
	s := make([]string, len(bs))
	for i, b := range bs {
		s[i] = strconv.Itoa(int(b))
	}
	return strings.Join(s, ",")
}

// Delete deletes the named topics. Names are required: no default here.
func Delete(ctx context.Context, adm *kadm.Client, names []string, out io.Writer) error {
	if len(names) == 0 {
		return errors.New("name the topics to delete")
	}
	resps, err := adm.DeleteTopics(ctx, names...)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range resps.Sorted() {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", r.Topic, r.Err))
			continue
		}
		fmt.Fprintf(out, "deleted: %s\n", r.Topic)
	}
	return errors.Join(errs...)
}
