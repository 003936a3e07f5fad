package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Partition is how far a group is behind on one partition.
//
// Lag counts against the last stable offset (LSO), the end a read_committed
// consumer can reach: records of a transaction still open lie beyond it, so
// they are not lag yet. LagHWM counts against the high watermark, as kadm's
// Lag (and kafka-consumer-groups) do; the two differ only while a
// transaction is open on the partition.
type Partition struct {
	Topic     string
	Partition int32
	Member    string // who holds it; empty when nobody does
	Committed int64  // next offset the group reads; -1 before its first commit
	Start     int64  // first offset of the log
	LSO       int64  // last stable offset
	HWM       int64  // high watermark
	Lag       int64  // LSO - Committed (LSO - Start before a commit); -1 when unknown
	LagHWM    int64  // HWM - Committed, kadm's figure; -1 when unknown
	Err       error
}

// Member is a consumer in a group and the partitions it holds.
type Member struct {
	Name     string // static instance ID, else client ID
	Static   bool   // Name is a static instance ID, unique in the group
	ID       string // member ID
	Host     string
	Assigned map[string][]int32 // by topic
}

// Group is one consumer group's lag.
type Group struct {
	Group      string
	State      string // Stable, PreparingRebalance, CompletingRebalance, Empty, Dead
	Members    []Member
	Partitions []Partition
	Err        error
}

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
	At     time.Time
	Groups []Group
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
	var starts, lsos, hwms kadm.ListedOffsets
	if names := topics.Topics(); len(names) > 0 {
		for _, l := range []struct {
			list func(context.Context, ...string) (kadm.ListedOffsets, error)
			into *kadm.ListedOffsets
			what string
		}{
			{adm.ListStartOffsets, &starts, "start"},
			{adm.ListCommittedOffsets, &lsos, "last stable"},
			{adm.ListEndOffsets, &hwms, "end"},
		} {
			*l.into, err = l.list(ctx, names...)
			if err != nil && !errors.As(err, &shardErr) {
				return rep, fmt.Errorf("list %s offsets: %w", l.what, err)
			}
		}
	}

	for _, name := range groups {
		g := Group{Group: name}
		d, ok := described[name]
		switch {
		case !ok:
			g.Err = errors.New("not described (its coordinator did not answer)")
		case d.Err != nil:
			g.Err = d.Err
		case fetched[name].Err != nil:
			g.Err = fetched[name].Err
		}
		if g.Err != nil {
			rep.Groups = append(rep.Groups, g)
			continue
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

		commits := fetched[name].Fetched
		stable := kadm.CalculateGroupLagWithStartOffsets(d, commits, starts, lsos)
		end := kadm.CalculateGroupLagWithStartOffsets(d, commits, starts, hwms)
		for _, l := range stable.Sorted() {
			p := Partition{Topic: l.Topic, Partition: l.Partition, Committed: l.Commit.At,
				Start: l.Start.Offset, LSO: l.End.Offset, Lag: l.Lag, LagHWM: -1, HWM: -1, Err: l.Err}
			if l.Member != nil {
				p.Member = memberName(l.Member)
			}
			if h, ok := end.Lookup(l.Topic, l.Partition); ok {
				p.HWM, p.LagHWM = h.End.Offset, h.Lag
				if p.Err == nil {
					p.Err = h.Err
				}
			}
			g.Partitions = append(g.Partitions, p)
		}
		rep.Groups = append(rep.Groups, g)
	}
	return rep, nil
}

// memberName names a member as an operator knows it: by its static
// instance ID (order-service-2), else by its client ID.
func memberName(m *kadm.DescribedGroupMember) string {
	if m.InstanceID != nil && *m.InstanceID != "" {
		return *m.InstanceID
	}
	return m.ClientID
}

// Print writes the report as tables, one per group. With prev, the report
// before it, each group also shows how fast it consumed in between.
func Print(w io.Writer, rep Report, prev *Report) error {
	if len(rep.Groups) == 0 {
		fmt.Fprintln(w, "no consumer groups")
	}
	for i, g := range rep.Groups {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if g.Err != nil {
			fmt.Fprintf(w, "%s: %v\n", g.Group, g.Err)
			continue
		}
		fmt.Fprintf(w, "%s  state=%s members=%d lag=%d", g.Group, g.State, len(g.Members), g.Lag())
		if rate, ok := consumedRate(g, rep.At, prev); ok {
			fmt.Fprintf(w, " consumed=%.1f/s", rate)
		}
		fmt.Fprintln(w)
		if len(g.Partitions) > 0 {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  TOPIC\tPARTITION\tCOMMITTED\tLSO\tHWM\tLAG\tMEMBER")
			for _, p := range g.Partitions {
				lag := fmt.Sprint(p.Lag)
				if p.Err != nil {
					lag = "? (" + p.Err.Error() + ")"
				}
				committed := fmt.Sprint(p.Committed)
				if p.Committed < 0 {
					committed = "-"
				}
				member := p.Member
				if member == "" {
					member = "-"
				}
				fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%d\t%s\t%s\n", p.Topic, p.Partition, committed, p.LSO, p.HWM, lag, member)
			}
			tw.Flush()
		}
		for _, m := range g.Members {
			var parts []string
			for _, t := range slices.Sorted(maps.Keys(m.Assigned)) {
				parts = append(parts, fmt.Sprintf("%s%v", t, m.Assigned[t]))
			}
			if len(parts) == 0 {
				parts = []string{"nothing assigned"}
			}
			name := m.Name
			if !m.Static {
				name += " (member " + shortID(m.ID) + ")" // client IDs repeat
			}
			fmt.Fprintf(w, "  member %s at %s: %s\n", name, m.Host, strings.Join(parts, " "))
		}
	}
	return nil
}

// consumedRate is how many records per second g committed since prev.
func consumedRate(g Group, at time.Time, prev *Report) (float64, bool) {
	if prev == nil {
		return 0, false
	}
	for _, pg := range prev.Groups {
		if pg.Group == g.Group && pg.Err == nil {
			secs := at.Sub(prev.At).Seconds()
			if secs <= 0 {
				return 0, false
			}
			return float64(g.Committed()-pg.Committed()) / secs, true
		}
	}
	return 0, false
}

func shortID(id string) string {
	if len(id) > 16 {
		return id[:16] + "…"
	}
	return id
}
