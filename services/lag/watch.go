package platform

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
)

// GroupWatch follows consumer groups: which instance holds which partition,
// and how far behind each partition is. It asks the cluster every interval
// (DescribeGroups, the committed offsets and the end offsets, as kadm's Lag
// does), so it shows what `kafka-consumer-groups --describe` and Kafka UI
// show, whichever process holds the partitions.
type GroupWatch struct {
	adm    *kadm.Client
	groups []string
	every  time.Duration
	log    *slog.Logger

	mu   sync.RWMutex
	last Groups
}

// Groups is what a GroupWatch saw last.
type Groups struct {
	Groups []GroupState `json:"groups"`
	At     *time.Time   `json:"at"`              // when it was asked; nil before the first answer
	Error  string       `json:"error,omitempty"` // why the last refresh failed, if it did
}

// GroupState is one consumer group.
type GroupState struct {
	Group      string           `json:"group"`
	State      string           `json:"state"` // Stable, PreparingRebalance, Empty, Dead…
	Members    []GroupMember    `json:"members"`
	Partitions []PartitionState `json:"partitions"`
	Lag        int64            `json:"lag"` // sum over the partitions
	Error      string           `json:"error,omitempty"`
}

// GroupMember is an instance in a group and the partitions it holds.
type GroupMember struct {
	Instance   string             `json:"instance"` // static instance ID, else the client ID
	MemberID   string             `json:"member_id"`
	Host       string             `json:"host"`
	Partitions map[string][]int32 `json:"partitions"` // by topic
}

// PartitionState is a partition of a group's topic.
type PartitionState struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Instance  string `json:"instance"` // who holds it; empty when nobody does
	MemberID  string `json:"-"`
	Committed int64  `json:"committed"` // next offset to read; -1 before the first commit
	End       int64  `json:"end"`       // the log end offset
	Lag       int64  `json:"lag"`       // -1 when unknown
}

// NewGroupWatch watches groups through adm, refreshing every interval.
func NewGroupWatch(adm *kadm.Client, every time.Duration, log *slog.Logger, groups ...string) *GroupWatch {
	return &GroupWatch{adm: adm, groups: groups, every: every, log: log}
}

// Run refreshes until ctx is cancelled.
func (w *GroupWatch) Run(ctx context.Context) error {
	tick := time.NewTicker(w.every)
	defer tick.Stop()
	for {
		w.refresh(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Last is the latest view of the groups.
func (w *GroupWatch) Last() Groups {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.last
}

func (w *GroupWatch) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(w.every, 2*time.Second))
	defer cancel()
	lags, err := w.adm.Lag(ctx, w.groups...)
	if ctx.Err() != nil && err != nil {
		return // stopping, or the cluster is slow: keep the last view
	}
	now := time.Now()
	if err != nil {
		w.log.Debug("describing consumer groups failed", "groups", w.groups, "err", err)
		w.mu.Lock()
		w.last.Error = err.Error()
		w.mu.Unlock()
		return
	}
	next := Groups{At: &now, Groups: make([]GroupState, 0, len(w.groups))}
	for _, g := range w.groups {
		next.Groups = append(next.Groups, groupState(g, lags[g]))
	}
	w.mu.Lock()
	w.last = next
	w.mu.Unlock()
}

func groupState(group string, l kadm.DescribedGroupLag) GroupState {
	gs := GroupState{Group: group, State: l.State, Members: []GroupMember{}, Partitions: []PartitionState{}}
	if err := l.Error(); err != nil {
		gs.Error = err.Error()
		return gs
	}
	for _, m := range l.Members {
		gm := GroupMember{Instance: instanceName(&m), MemberID: m.MemberID, Host: m.ClientHost, Partitions: map[string][]int32{}}
		if c, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range c.Topics {
				gm.Partitions[t.Topic] = slices.Sorted(slices.Values(t.Partitions))
			}
		}
		gs.Members = append(gs.Members, gm)
	}
	slices.SortFunc(gs.Members, func(a, b GroupMember) int { return cmp.Compare(a.Instance, b.Instance) })
	for _, ps := range l.Lag {
		for _, p := range ps {
			st := PartitionState{Topic: p.Topic, Partition: p.Partition, Committed: p.Commit.At, End: p.End.Offset, Lag: p.Lag}
			if p.Member != nil {
				st.Instance, st.MemberID = instanceName(p.Member), p.Member.MemberID
			}
			if p.Lag > 0 {
				gs.Lag += p.Lag
			}
			gs.Partitions = append(gs.Partitions, st)
		}
	}
	slices.SortFunc(gs.Partitions, func(a, b PartitionState) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return gs
}

// instanceName names a member as an operator knows it: by the instance ID
// it was started with (order-service-2), else by its client ID.
func instanceName(m *kadm.DescribedGroupMember) string {
	if m.InstanceID != nil && *m.InstanceID != "" {
		return *m.InstanceID
	}
	return m.ClientID
}

// LagCollector exports the lag of the partitions that the member memberID
// returns holds in group, as shop_consumer_lag: each instance reports its
// own partitions, so a sum over instances counts every partition once.
func (w *GroupWatch) LagCollector(group string, memberID func() string) prometheus.Collector {
	return &lagCollector{w: w, group: group, memberID: memberID, desc: prometheus.NewDesc(
		"shop_consumer_lag",
		"Records on the partition not yet consumed by its group (log end offset minus committed offset), for the partitions this instance holds.",
		[]string{"group", "topic", "partition"}, nil)}
}

type lagCollector struct {
	w        *GroupWatch
	group    string
	memberID func() string
	desc     *prometheus.Desc
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	me := c.memberID()
	if me == "" {
		return
	}
	for _, g := range c.w.Last().Groups {
		if g.Group != c.group {
			continue
		}
		for _, p := range g.Partitions {
			if p.MemberID == me && p.Lag >= 0 {
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(p.Lag),
					c.group, p.Topic, strconv.Itoa(int(p.Partition)))
			}
		}
	}
}
