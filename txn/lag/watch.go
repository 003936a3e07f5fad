package lag

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/blackfriday-kafka/shop/txn/loop"
)

// Watch asks the cluster for the lag of some groups every interval, for the
// dashboard and /metrics: what `make lag` and `kafka-consumer-groups
// --describe` show, whichever process holds the partitions.
type Watch struct {
	adm    func() *kadm.Client
	groups []string
	every  time.Duration
	log    *slog.Logger

	// StallAfter is how long a partition may have records pending while
	// its committed offset stands still before it is reported stalled.
	StallAfter time.Duration

	mu    sync.RWMutex
	last  Snapshot
	moved map[progress]time.Time // when each committed offset was first seen
}

type progress struct {
	group, topic string
	partition    int32
	committed    int64
}

// Snapshot is what a Watch saw last.
type Snapshot struct {
	Groups []Group    `json:"groups"`
	At     *time.Time `json:"at"`              // when it was asked; nil before the first answer
	Error  string     `json:"error,omitempty"` // why the last refresh failed, if it did
}

// NewWatch watches groups, refreshing every interval, through the client
// adm returns at each refresh: the owner may replace its client.
func NewWatch(adm func() *kadm.Client, every time.Duration, log *slog.Logger, groups ...string) *Watch {
	return &Watch{adm: adm, groups: groups, every: every, log: log, StallAfter: time.Minute,
		last: Snapshot{Groups: []Group{}}, moved: make(map[progress]time.Time)}
}

// Run refreshes until ctx is cancelled.
func (w *Watch) Run(ctx context.Context) error {
	w.refresh(ctx)
	return loop.Every(ctx, w.every, func(time.Time) { w.refresh(ctx) })
}

// Last is the latest snapshot.
func (w *Watch) Last() Snapshot {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.last
}

func (w *Watch) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(w.every, 2*time.Second))
	defer cancel()
	rep, err := Collect(ctx, w.adm(), w.groups...)
	if ctx.Err() != nil && err != nil {
		return // stopping, or the cluster is slow: keep the last view
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.log.Debug("asking the lag of the consumer groups failed", "groups", w.groups, "err", err)
		w.last.Error = err.Error()
		return
	}
	w.stalls(rep)
	w.last = Snapshot{Groups: rep.Groups, At: &rep.At}
}

// stalls marks the partitions whose committed offset has stood still for
// longer than StallAfter while records were pending.
func (w *Watch) stalls(rep Report) {
	seen := make(map[progress]time.Time, len(w.moved))
	for gi := range rep.Groups {
		g := &rep.Groups[gi]
		for pi := range g.Partitions {
			p := &g.Partitions[pi]
			k := progress{g.Group, p.Topic, p.Partition, p.Committed}
			since, ok := w.moved[k]
			if !ok || p.Pending() == 0 {
				since = rep.At
			}
			seen[k] = since
			if rep.At.Sub(since) >= w.StallAfter {
				p.StalledSince = &since
			}
		}
	}
	w.moved = seen
}

// Collector exports, as shop_consumer_lag, the lag of the partitions of
// group that the member memberID returns holds: each instance reports its
// own partitions, so a sum over instances counts every partition once.
func (w *Watch) Collector(group string, memberID func() string) prometheus.Collector {
	return &collector{w: w, group: group, memberID: memberID, desc: prometheus.NewDesc(
		"shop_consumer_lag",
		"Records on the partition its group can read but has not committed yet (last stable offset minus committed offset), for the partitions this instance holds.",
		[]string{"group", "topic", "partition"}, nil)}
}

type collector struct {
	w        *Watch
	group    string
	memberID func() string
	desc     *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
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
