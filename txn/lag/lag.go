// Package lag is how far each consumer group of the shop is behind, with one
// definition for /metrics, the dashboard and scripts/lag: per partition, the
// last stable offset minus the group's committed offset.
package lag

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/blackfriday-kafka/shop/schemas"
)

// Partition is how far a group is behind on one partition.
//
// Lag counts against the last stable offset (LSO), the end a read_committed
// consumer can reach: records of a transaction still open lie beyond it, so
// they are not lag yet. LagHWM counts against the high watermark, as kadm's
// Lag (and kafka-consumer-groups) do; the two differ only while a
// transaction is open on the partition.
type Partition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Member    string `json:"instance"` // who holds it; empty when nobody does
	MemberID  string `json:"-"`
	Committed int64  `json:"committed"` // next offset the group reads; -1 before its first commit
	Start     int64  `json:"start"`     // first offset of the log
	LSO       int64  `json:"lso"`       // last stable offset
	HWM       int64  `json:"hwm"`       // high watermark
	Lag       int64  `json:"lag"`       // LSO - Committed (LSO - Start before a commit); -1 when unknown
	LagHWM    int64  `json:"lag_hwm"`   // HWM - Committed, kadm's figure; -1 when unknown
	Err       string `json:"error,omitempty"`

	// StalledSince is set by a Watch when the group has records to read
	// on the partition but has not moved its committed offset for longer
	// than the watch's bound: the stage that holds it is stuck.
	StalledSince *time.Time `json:"stalled_since,omitempty"`
}

// Pending is how many records the group still has to read on the
// partition: the lag, less the commit marker that a group caught up on a
// topic written in transactions never reads.
func (p Partition) Pending() int64 {
	if s, ok := schemas.Lookup(p.Topic); ok && s.Writes == schemas.InTransactions && p.Lag == 1 {
		return 0
	}
	return max(p.Lag, 0)
}

// Member is a consumer in a group and the partitions it holds.
type Member struct {
	Name     string             `json:"instance"` // static instance ID, else client ID
	Static   bool               `json:"static"`   // Name is a static instance ID, unique in the group
	ID       string             `json:"member_id"`
	Host     string             `json:"host"`
	Assigned map[string][]int32 `json:"partitions"` // by topic
}

// Group is one consumer group's lag.
type Group struct {
	Group      string      `json:"group"`
	State      string      `json:"state"` // Stable, PreparingRebalance, CompletingRebalance, Empty, Dead
	Members    []Member    `json:"members"`
	Partitions []Partition `json:"partitions"`
	Err        string      `json:"error,omitempty"`
}

// Lag is the group's lag summed over its partitions.

// Lag is the group's lag summed over its partitions.
func (g Group) Lag() int64 {
	var n int64
	for _, p := range g.Partitions {
		n += max(p.Lag, 0)
	}
	return n
}

// Committed is the sum of the group's committed offsets: its progress.
func (g Group) Committed() int64 {
	var n int64
	for _, p := range g.Partitions {
		n += max(p.Committed, 0)
	}
	return n
}

// Report is every group's lag at one moment.
type Report struct {
	At     time.Time `json:"at"`
	Groups []Group   `json:"groups"`
}

// Collect describes groups (every group when none is named), fetches their
// committed offsets and lists the start, stable and end offsets of their
// topics, then computes lag with kadm's own calculation, once against the
// LSO and once against the high watermark.
func Collect(ctx context.Context, adm *kadm.Client, groups ...string) (Report, error) {
	rep := Report{At: time.Now()}
	if len(groups) == 0 {
		listed, err := adm.ListGroups(ctx)
		if err != nil {
			return rep, fmt.Errorf("list groups: %w", err)
		}
		groups = listed.Groups()
		if len(groups) == 0 {
			return rep, nil
		}
	}
	described, err := adm.DescribeGroups(ctx, groups...)
	var shardErr *kadm.ShardErrors
	if err != nil && !(errors.As(err, &shardErr) && !shardErr.AllFailed) {
		return rep, fmt.Errorf("describe groups: %w", err)
	}
	fetched := adm.FetchManyOffsets(ctx, groups...)
	topics := described.AssignedPartitions()
	topics.MergeTopics(described.JoinTopics())
	topics.Merge(fetched.CommittedPartitions())
	offs, err := listOffsets(ctx, adm, topics.Topics())
	if err != nil {
		return rep, err
	}
	for _, name := range groups {
		rep.Groups = append(rep.Groups, offs.group(name, described, fetched))
	}
	return rep, nil
}

// offsets are where the partitions of some topics start, where their last
// stable offset is and where they end.
type offsets struct{ starts, lsos, hwms kadm.ListedOffsets }

// listOffsets lists the offsets of topics. A shard that did not answer leaves
// its partitions without, which their lag then says.
func listOffsets(ctx context.Context, adm *kadm.Client, topics []string) (offsets, error) {
	var o offsets
	if len(topics) == 0 {
		return o, nil
	}
	var shardErr *kadm.ShardErrors
	for _, l := range []struct {
		list func(context.Context, ...string) (kadm.ListedOffsets, error)
		into *kadm.ListedOffsets
		what string
	}{
		{adm.ListStartOffsets, &o.starts, "start"},
		{adm.ListCommittedOffsets, &o.lsos, "last stable"},
		{adm.ListEndOffsets, &o.hwms, "end"},
	} {
		var err error
		if *l.into, err = l.list(ctx, topics...); err != nil && !errors.As(err, &shardErr) {
			return o, fmt.Errorf("list %s offsets: %w", l.what, err)
		}
	}
	return o, nil
}

// group is the lag of group name, or why it is not known.
func (o offsets) group(name string, described kadm.DescribedGroups, fetched kadm.FetchOffsetsResponses) Group {
	g := Group{Group: name, Members: []Member{}, Partitions: []Partition{}}
	d, ok := described[name]
	switch {
	case !ok:
		g.Err = "not described (its coordinator did not answer)"
	case d.Err != nil:
		g.Err = d.Err.Error()
	case fetched[name].Err != nil:
		g.Err = fetched[name].Err.Error()
	}
	if g.Err != "" {
		return g
	}
	g.State = d.State
	for _, m := range d.Members {
		mm := Member{Name: memberName(&m), Static: m.InstanceID != nil && *m.InstanceID != "",
			ID: m.MemberID, Host: m.ClientHost, Assigned: map[string][]int32{}}
		if c, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range c.Topics {
				mm.Assigned[t.Topic] = slices.Sorted(slices.Values(t.Partitions))
			}
		}
		g.Members = append(g.Members, mm)
	}
	slices.SortFunc(g.Members, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	g.Partitions = o.partitions(d, fetched[name].Fetched)
	return g
}

// partitions is the lag of each partition of group d, which committed
// commits, against the LSO and against the high watermark.
func (o offsets) partitions(d kadm.DescribedGroup, commits kadm.OffsetResponses) []Partition {
	parts := []Partition{}
	stable := kadm.CalculateGroupLagWithStartOffsets(d, commits, o.starts, o.lsos)
	end := kadm.CalculateGroupLagWithStartOffsets(d, commits, o.starts, o.hwms)
	for _, l := range stable.Sorted() {
		p := Partition{Topic: l.Topic, Partition: l.Partition, Committed: l.Commit.At,
			Start: l.Start.Offset, LSO: l.End.Offset, Lag: l.Lag, LagHWM: -1, HWM: -1}
		if l.Member != nil {
			p.Member, p.MemberID = memberName(l.Member), l.Member.MemberID
		}
		err := l.Err
		if h, ok := end.Lookup(l.Topic, l.Partition); ok {
			p.HWM, p.LagHWM = h.End.Offset, h.Lag
			err = cmp.Or(err, h.Err)
		}
		if err != nil {
			p.Err = err.Error()
		}
		parts = append(parts, p)
	}
	return parts
}

// memberName names a member as an operator knows it: by its static
// instance ID (order-service-2), else by its client ID.
func memberName(m *kadm.DescribedGroupMember) string {
	if m.InstanceID != nil && *m.InstanceID != "" {
		return *m.InstanceID
	}
	return m.ClientID
}
