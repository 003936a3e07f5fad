package view

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/blackfriday-kafka/shop/txn/kafkaclient"
)

// Partitioned is a view split by partition number among the members of a
// consumer group: each member folds only the partitions the group gives
// it, partition p of every topic together (the topics have as many
// partitions and the same keys, so p holds everything of its keys), into a
// state of p's own. A state moves with its partition: its owner checkpoints
// it under p's name, and the next owner starts from that checkpoint and
// the log after it; the previous owner drops it. Reading one partition's
// state therefore needs its owner: each member advertises an address in its
// group metadata, which Owners reads back.
type Partitioned[S State] struct {
	cl     *kgo.Client
	adm    *kadm.Client
	built  chan struct{} // closed once cl and adm are set: the group may assign before
	group  string
	topics []string
	log    *slog.Logger
	fresh  func() S

	cps   *Checkpoints // nil: no checkpoints
	every time.Duration

	work sync.Mutex // held while records are folded or partitions change hands

	mu       sync.Mutex
	parts    map[int32]*part[S] // the partitions owned, by number
	assigned []int32            // what the last assignment gave this member
	joined   bool               // an assignment came
	ready    bool               // every partition of an assignment caught up, once
	saved    time.Time
}

type part[S State] struct {
	state    S
	position map[string]int64 // by topic, the next offset to read
	ends     map[string]int64 // by topic, where the log ended when the partition came
	caughtUp bool
	since    time.Time
	dirty    bool
}

// PartitionedConfig is how a Partitioned view reads.
type PartitionedConfig[S State] struct {
	Brokers []string
	Group   string
	Topics  []string // all with as many partitions
	Log     *slog.Logger
	Fresh   func() S      // an empty state of one partition
	Address func() string // this member's address, advertised to the others
	// Checkpoints, if not nil, keeps each partition's state every Every
	// while records come, when it leaves, and when the view stops.
	Checkpoints *Checkpoints
	Every       time.Duration
	// SessionTimeout is how long the group waits for a member that stopped
	// answering before it gives its partitions to the others.
	SessionTimeout time.Duration
	Opts           []kgo.Opt // such as the cluster's credentials and metrics hooks
}

// pollMax bounds the records folded between two chances to rebalance.
const pollMax = 10_000

// FollowPartitioned joins the group; Run reads.
func FollowPartitioned[S State](cfg PartitionedConfig[S]) (*Partitioned[S], error) {
	v := &Partitioned[S]{built: make(chan struct{}), group: cfg.Group, topics: cfg.Topics, log: cfg.Log, fresh: cfg.Fresh,
		cps: cfg.Checkpoints, every: cfg.Every, parts: make(map[int32]*part[S])}
	session := cfg.SessionTimeout
	if session <= 0 {
		session = 6 * time.Second
	}
	var err error
	v.cl, err = kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.Balancers(&byNumber{address: cfg.Address, assigned: v.noteAssigned}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // see Follow
		kgo.FetchMaxWait(kafkaclient.FetchMaxWait),
		// Records are folded between polls only, so that a partition
		// never changes hands in the middle of a record.
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(session),
		kgo.HeartbeatInterval(session / 10),
		kgo.RebalanceTimeout(2 * saveTimeout),
		// The group's committed offsets are the position, published for
		// lag tools; where a partition starts is its checkpoint's.
		kgo.AutoCommitInterval(5 * time.Second),
		kgo.AdjustFetchOffsetsFn(v.take),
		kgo.OnPartitionsRevoked(func(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
			v.leave(ctx, revoked, true)
		}),
		kgo.OnPartitionsLost(func(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
			v.leave(ctx, lost, false)
		}),
	}, cfg.Opts...)...)
	if err != nil {
		return nil, err
	}
	v.adm = kadm.NewClient(v.cl)
	close(v.built)
	return v, nil
}

// Run folds every record of the partitions owned with apply, in order, on
// one goroutine, until ctx is cancelled; unreadable records are skipped and
// other failures retried, as in Follower.Run. At the end it checkpoints
// what it holds and leaves the group.
func (v *Partitioned[S]) Run(ctx context.Context, apply func(context.Context, S, *kgo.Record) error) error {
	if v.cps != nil {
		defer v.cps.Close()
	}
	defer func() {
		// Leaving the group waits for the rebalance this loop holds
		// off between polls; the revocation checkpoints.
		v.cl.AllowRebalance()
		v.cl.Close()
	}()
	v.saved = time.Now()
	for {
		fetches := v.cl.PollRecords(ctx, pollMax)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		_ = kafkaclient.CheckFetches(fetches, v.log)
		v.work.Lock()
		ok := v.fold(ctx, fetches.Records(), apply)
		if v.cps != nil && time.Since(v.saved) >= v.every {
			v.saveAll(ctx)
			v.saved = time.Now()
		}
		v.work.Unlock()
		v.cl.AllowRebalance()
		if !ok {
			return nil
		}
	}
}

// fold applies recs; false if ctx ended first. v.work is held.
func (v *Partitioned[S]) fold(ctx context.Context, recs []*kgo.Record, apply func(context.Context, S, *kgo.Record) error) bool {
	for _, r := range recs {
		v.mu.Lock()
		p := v.parts[r.Partition]
		v.mu.Unlock()
		if p == nil {
			continue // not ours (any more): its owner folds it
		}
		if !r.Attrs.IsControl() && !applyRetrying(ctx, v.log, r, func(ctx context.Context, r *kgo.Record) error {
			return apply(ctx, p.state, r)
		}) {
			return false
		}
		v.mu.Lock()
		p.position[r.Topic] = r.Offset + 1
		p.dirty = p.dirty || !r.Attrs.IsControl()
		if !p.caughtUp && reachedEnds(p.position, p.ends) {
			p.caughtUp = true
			v.log.Info("partition caught up", "partition", r.Partition, "after", time.Since(p.since).Round(time.Millisecond))
		}
		v.mu.Unlock()
	}
	// Once a poll, not once a record: during a catch-up every record
	// would look over every partition.
	v.mu.Lock()
	v.noteReady()
	v.mu.Unlock()
	return true
}

func reachedEnds(position, ends map[string]int64) bool {
	for topic, end := range ends {
		if position[topic] < end {
			return false
		}
	}
	return true
}

// noteReady notes when every partition of the assignment has caught up
// once: from then on the instance is ready, whatever the next rebalances
// do (the answers say which partitions are behind). v.mu is held.
func (v *Partitioned[S]) noteReady() {
	if v.ready || !v.joined {
		return
	}
	for _, n := range v.assigned {
		if p := v.parts[n]; p == nil || !p.caughtUp {
			return
		}
	}
	v.ready = true
}

// take starts the partitions the group gave this member: each from its
// latest checkpoint, or from the start without one. It is the group's
// AdjustFetchOffsetsFn, so what it returns is where reading starts.
func (v *Partitioned[S]) take(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	select { // the client joins its group before the constructor has it
	case <-v.built:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	v.work.Lock()
	defer v.work.Unlock()
	numbers := make(map[int32]bool)
	for _, parts := range offsets {
		for n := range parts {
			numbers[n] = true
		}
	}
	ends, err := v.adm.ListCommittedOffsets(ctx, v.topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("ends of %v: %w", v.topics, err)
	}
	taken := make(map[int32]*part[S], len(numbers))
	for n := range numbers {
		v.mu.Lock()
		p := v.parts[n]
		v.mu.Unlock()
		if p == nil {
			if p, err = v.restore(ctx, n); err != nil {
				return nil, err
			}
		}
		p.ends = make(map[string]int64, len(v.topics))
		for _, topic := range v.topics {
			if end, ok := ends.Lookup(topic, n); ok {
				p.ends[topic] = end.Offset
			}
		}
		p.caughtUp = reachedEnds(p.position, p.ends)
		taken[n] = p
	}
	out := make(map[string]map[int32]kgo.Offset, len(offsets))
	for topic, parts := range offsets {
		out[topic] = make(map[int32]kgo.Offset, len(parts))
		for n := range parts {
			at := kgo.NewOffset().AtStart()
			if off, ok := taken[n].position[topic]; ok {
				at = kgo.NewOffset().At(off)
			}
			out[topic][n] = at
		}
	}
	v.mu.Lock()
	maps.Copy(v.parts, taken)
	v.noteReady()
	v.mu.Unlock()
	return out, nil
}

// restore is partition n's state as its latest checkpoint has it, or an
// empty one at the start of the log.
func (v *Partitioned[S]) restore(ctx context.Context, n int32) (*part[S], error) {
	p := &part[S]{state: v.fresh(), position: make(map[string]int64), since: time.Now()}
	if v.cps == nil {
		return p, nil
	}
	cp, err := v.cps.LoadNamed(ctx, strconv.Itoa(int(n)))
	switch {
	case err != nil:
		return nil, fmt.Errorf("checkpoint of partition %d: %w", n, err) // the group tries again
	case cp == nil:
		v.log.Info("partition taken", "partition", n, "from_checkpoint", false)
		return p, nil
	}
	if err := p.state.Restore(cp.State); err != nil {
		v.log.Warn("checkpoint not restored, reading the partition from the start", "partition", n, "err", err)
		p.state = v.fresh()
		return p, nil
	}
	for topic, parts := range cp.Offsets {
		if off, ok := parts[n]; ok {
			p.position[topic] = off
		}
	}
	v.log.Info("partition taken", "partition", n, "from_checkpoint", true, "offsets", p.position)
	return p, nil
}

// leave hands over the partitions taken from this member: checkpointed
// first if it still held them rightfully (a revocation, not a loss), then
// dropped, so that the next owner starts where this one stopped.
func (v *Partitioned[S]) leave(ctx context.Context, gone map[string][]int32, save bool) {
	v.work.Lock()
	defer v.work.Unlock()
	numbers := make(map[int32]bool)
	for _, parts := range gone {
		for _, n := range parts {
			numbers[n] = true
		}
	}
	for n := range numbers {
		v.mu.Lock()
		p := v.parts[n]
		v.mu.Unlock()
		if p != nil && save {
			v.save(ctx, n, p)
		}
		v.mu.Lock()
		delete(v.parts, n)
		v.mu.Unlock()
	}
	if len(numbers) > 0 {
		v.log.Info("partitions handed over", "partitions", slices.Sorted(maps.Keys(numbers)), "checkpointed", save && v.cps != nil)
	}
}

// saveAll checkpoints every partition that changed. v.work is held.
func (v *Partitioned[S]) saveAll(ctx context.Context) {
	v.mu.Lock()
	parts := maps.Clone(v.parts)
	v.mu.Unlock()
	for n, p := range parts {
		v.save(ctx, n, p)
	}
}

// save checkpoints partition n if it changed. v.work is held, so nothing
// folds into it meanwhile. It is not cut short by shutdown.
func (v *Partitioned[S]) save(ctx context.Context, n int32, p *part[S]) {
	v.mu.Lock()
	dirty, position := p.dirty, maps.Clone(p.position)
	v.mu.Unlock()
	if v.cps == nil || !dirty {
		return
	}
	state, err := p.state.Snapshot()
	if err != nil {
		v.log.Warn("checkpoint not taken", "partition", n, "err", err)
		return
	}
	offsets := make(map[string]map[int32]int64, len(position))
	for topic, off := range position {
		offsets[topic] = map[int32]int64{n: off}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	if err := v.cps.SaveNamed(ctx, strconv.Itoa(int(n)), Checkpoint{Offsets: offsets, State: state}); err != nil {
		v.log.Warn("checkpoint not saved", "partition", n, "err", err)
		return
	}
	v.mu.Lock()
	p.dirty = false
	v.mu.Unlock()
}

// noteAssigned records what the group gave this member, as its balancer
// parses it.
func (v *Partitioned[S]) noteAssigned(assigned map[string][]int32) {
	numbers := make(map[int32]bool)
	for _, parts := range assigned {
		for _, n := range parts {
			numbers[n] = true
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.assigned, v.joined = slices.Sorted(maps.Keys(numbers)), true
	v.noteReady() // a member given nothing (more members than partitions) is ready as it joins
}

// Owned is one partition this member holds.
type Owned[S State] struct {
	Partition int32
	State     S
	CaughtUp  bool             // it has read what was committed when it came
	Since     time.Time        // when it came to this member
	Position  map[string]int64 // by topic, the next offset to read
}

// Owned lists the partitions this member holds, by number.
func (v *Partitioned[S]) Owned() []Owned[S] {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]Owned[S], 0, len(v.parts))
	for _, n := range slices.Sorted(maps.Keys(v.parts)) {
		p := v.parts[n]
		out = append(out, Owned[S]{Partition: n, State: p.state, CaughtUp: p.caughtUp, Since: p.since, Position: maps.Clone(p.position)})
	}
	return out
}

// Ready reports whether the member has joined and caught up with the
// partitions of an assignment once.
func (v *Partitioned[S]) Ready() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.ready
}

// Member is a member of the group as its coordinator describes it.
type Member struct {
	ID         string  `json:"member_id"`
	Name       string  `json:"name"`       // its client ID`
	Address    string  `json:"address"`    // as it advertises itself
	Partitions []int32 `json:"partitions"` // the numbers it holds
}

// Owners describes the group: its members and the partition numbers each
// holds. While the group rebalances, no member holds anything.
func (v *Partitioned[S]) Owners(ctx context.Context) ([]Member, error) {
	described, err := v.adm.DescribeGroups(ctx, v.group)
	if err != nil {
		return nil, err
	}
	g, ok := described[v.group]
	if !ok {
		return nil, fmt.Errorf("group %s not described", v.group)
	}
	if g.Err != nil {
		return nil, g.Err
	}
	var out []Member
	for _, m := range g.Members {
		member := Member{ID: m.MemberID, Name: m.ClientID}
		if meta, ok := m.Join.AsConsumer(); ok {
			member.Address = string(meta.UserData)
		}
		if g.State == "Stable" {
			if assigned, ok := m.Assigned.AsConsumer(); ok {
				numbers := make(map[int32]bool)
				for _, t := range assigned.Topics {
					for _, n := range t.Partitions {
						numbers[n] = true
					}
				}
				member.Partitions = slices.Sorted(maps.Keys(numbers))
			}
		}
		out = append(out, member)
	}
	return out, nil
}

// Partitions is how many partition numbers the view's topics have: the
// most of any of them.
func (v *Partitioned[S]) Partitions(ctx context.Context) (int32, error) {
	topics, err := v.adm.ListTopics(ctx, v.topics...)
	if err != nil {
		return 0, err
	}
	var most int32
	for _, name := range v.topics {
		t, ok := topics[name]
		switch {
		case !ok:
			return 0, fmt.Errorf("topic %s not listed", name)
		case t.Err != nil:
			return 0, fmt.Errorf("topic %s: %w", name, t.Err)
		}
		most = max(most, int32(len(t.Partitions)))
	}
	return most, nil
}

// MemberID is this member's ID in the group, empty before it joins.
func (v *Partitioned[S]) MemberID() string {
	id, _ := v.cl.GroupMetadata()
	return id
}

// Client is the member's Kafka client, for health checks and admin.
func (v *Partitioned[S]) Client() *kgo.Client { return v.cl }

// byNumber is the group's balancer: partition number p of every topic goes
// to the same member, the numbers dealt round the members in turn. Each
// member's metadata carries its address, for Owners.
type byNumber struct {
	address  func() string
	assigned func(map[string][]int32)
}

// byNumberProtocol names the balancer in the group: members that balance
// otherwise cannot join.
const byNumberProtocol = "shop-partition-number"

func (*byNumber) ProtocolName() string { return byNumberProtocol }
func (*byNumber) IsCooperative() bool  { return false }

func (b *byNumber) JoinGroupMetadata(topics []string, _ map[string][]int32, _ int32) []byte {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = topics
	if b.address != nil {
		meta.UserData = []byte(b.address())
	}
	return meta.AppendTo(nil)
}

func (b *byNumber) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	assigned, err := kgo.ParseConsumerSyncAssignment(assignment)
	if err == nil && b.assigned != nil {
		b.assigned(assigned)
	}
	return assigned, err
}

func (b *byNumber) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	cb, err := kgo.NewConsumerBalancer(b, members)
	if err != nil {
		return nil, nil, err
	}
	return cb, cb.MemberTopics(), nil
}

// Balance deals the partition numbers round the members, in the order of
// the group's answer to the leader, so that each holds p of every topic it
// reads.
func (b *byNumber) Balance(cb *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	plan := cb.NewPlan()
	members := cb.Members()
	if len(members) == 0 {
		return plan
	}
	var most int32
	for _, n := range topics {
		most = max(most, n)
	}
	for n := range most {
		m, meta := cb.MemberAt(int(n) % len(members))
		for _, topic := range meta.Topics {
			if n < topics[topic] {
				plan.AddPartition(m, topic, n)
			}
		}
	}
	return plan
}
