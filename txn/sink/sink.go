// Package sink is the runtime's side effect after the commit, at least
// once: it reads a topic that an exactly-once stage wrote (an outbox) in a
// consumer group of its own, read_committed, so that nothing of an aborted
// transaction ever has an effect; hands each record to a side effect
// outside Kafka, such as an email to a mail server; writes the records that
// say what came of it (an outcome record, a dead letter); and only then
// commits the offsets that the effects prove. A crash in between runs the
// effect again for what it could not prove: the price of a boundary no
// Kafka transaction covers, which an effect makes harmless by being the
// same each time (an email keeps its Message-ID).
//
// The effects of one partition run on Lanes side by side, the records of
// one key on one lane in order. When one fails, the partition's offset
// stops at it and the cycle's other lanes are remembered as ahead, so the
// retry does not run their effects again; Budget bounds the work a cycle
// begins, so that a slow effect never holds up a rebalance or a commit.
package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn/kafkaclient"
	"github.com/blackfriday-kafka/shop/txn/loop"
)

// Lane runs side effects one after another, such as one connection to a
// mail server.
type Lane interface {
	// Do runs the effect of r and returns the records that say what came
	// of it, written before r's offset commits. An error means the effect
	// did not happen, or is not proven: r is tried again after a backoff.
	// ErrKilled stops the sink where it stands.
	Do(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error)
	Close()
}

// ErrKilled, returned by a Lane, stops the sink as a SIGKILL would: nothing
// of its cycle is written or committed, and it does not leave its group.
// It is for tests of what a crash leaves behind.
var ErrKilled = errors.New("sink: killed on purpose (test)")

// Config configures a Sink. Brokers, Group, Topic, Member and NewLane are
// required; every other field has a default.
type Config struct {
	Name    string // what the sink does, in its errors: email delivery
	To      string // where its effects go, in its health: the mail server's address
	Brokers []string
	// Connect are the options any client needs to reach the cluster
	// besides Brokers, such as credentials; Opts are more of the sink's
	// own client, such as its metrics' hooks.
	Connect, Opts []kgo.Opt
	Group, Topic  string
	Member        string // its static member name in Group
	Logger        *slog.Logger
	Attrs         []any // on each line about failures, such as the mail server's address

	// NewLane opens a lane; Lanes of them run each partition's effects.
	NewLane func() Lane
	Lanes   int // default 8
	// Await, if set, is waited for before the first poll: what the
	// effects need, such as their schemas. If it fails, ctx ended.
	Await func(ctx context.Context) error

	// Backoff after a cycle in which an effect failed doubles from
	// MinBackoff to MaxBackoff and resets after one without failure.
	MinBackoff, MaxBackoff time.Duration // default 100ms, 5s
	// Budget bounds the time one poll's effects take before the rest waits
	// for the next poll, so that a slow effect never holds up a rebalance
	// or the progress commits for long.
	Budget time.Duration // default 500ms
	// StallAfter is how long effects may fail before Healthy says so.
	StallAfter     time.Duration // default 1m
	SessionTimeout time.Duration // default 10s
}

func (c *Config) defaults() error {
	if len(c.Brokers) == 0 || c.Group == "" || c.Topic == "" || c.Member == "" || c.NewLane == nil {
		return errors.New("sink: brokers, group, topic, member and lanes are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.MinBackoff, 100*time.Millisecond)
	def(&c.MaxBackoff, 5*time.Second)
	def(&c.Budget, 500*time.Millisecond)
	def(&c.StallAfter, time.Minute)
	def(&c.SessionTimeout, 10*time.Second)
	if c.Lanes <= 0 {
		c.Lanes = 8
	}
	if c.Name == "" {
		c.Name = "sink"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// pollMax is the most records taken from the client at a time: a cycle
// pays for writing its outcome records and committing its offsets once,
// which on a loaded real cluster takes up to a second, so a cycle must be
// able to carry more than a second's records; Budget still bounds the work
// a kill would leave unproven.
const pollMax = 2000

// Sink is a running side effect after the commit.
type Sink struct {
	cfg Config
	cl  *kgo.Client
	log *slog.Logger
	// lanes are each partition's; rebalances wait for the loop between
	// polls (BlockRebalanceOnPoll), so no effect is using them then.
	lanes map[int32][]Lane
	// ahead are records whose effects ran and were recorded beyond their
	// partition's committed offset, while another lane failed: the next
	// cycle reads them again, and must not run them again.
	ahead    map[int32]map[int64]bool
	poll     *loop.Poll
	failures *loop.Failures
}

// New connects a sink; it starts when Run is called, and Run must be
// called: it closes the sink's client.
func New(cfg Config) (*Sink, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, log: cfg.Logger, lanes: make(map[int32][]Lane), ahead: make(map[int32]map[int64]bool)}
	var err error
	s.cl, err = kgo.NewClient(append(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// As the stages and views: a commit of the stage that writes
		// the topic reaches this read_committed reader only with its
		// next fetch.
		kgo.FetchMaxWait(kafkaclient.FetchMaxWait),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		// A restarted instance takes its partitions back at once.
		kgo.InstanceID(cfg.Member),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(cfg.SessionTimeout / 10),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.OnPartitionsAssigned(s.logAssignment("assigned")),
		kgo.OnPartitionsRevoked(s.handOver("revoked")),
		kgo.OnPartitionsLost(s.handOver("lost")),
	}, cfg.Connect...), cfg.Opts...)...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	s.poll = &loop.Poll{Name: cfg.Name, Client: func() *kgo.Client { return s.cl }, Max: pollMax, Log: s.log,
		MinBackoff: cfg.MinBackoff, MaxBackoff: cfg.MaxBackoff, Step: s.cycle, Polled: s.cl.AllowRebalance}
	s.failures = &loop.Failures{After: cfg.StallAfter, Log: s.log, Attrs: cfg.Attrs,
		Lines: loop.Lines{Begun: "delivery failing, retrying with backoff", Stalled: "delivery stalled", Ended: "delivery going again"}}
	return s, nil
}

func (s *Sink) logAssignment(what string) func(context.Context, *kgo.Client, map[string][]int32) {
	return func(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
		if len(parts) > 0 {
			s.log.Info("partitions "+what, "group", s.cfg.Group, "topic", s.cfg.Topic, "partitions", parts[s.cfg.Topic])
		}
	}
}

// handOver logs partitions taken away and closes their lanes: another
// instance runs their effects now.
func (s *Sink) handOver(what string) func(context.Context, *kgo.Client, map[string][]int32) {
	logged := s.logAssignment(what)
	return func(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
		logged(ctx, cl, parts)
		for _, p := range parts[s.cfg.Topic] {
			for _, l := range s.lanes[p] {
				l.Close()
			}
			delete(s.lanes, p)
			delete(s.ahead, p) // the next owner runs them again, as after a crash
		}
	}
}

// Run runs effects until ctx is cancelled, then commits what they proved,
// leaves the group and returns nil. It returns an error only when it cannot
// go on: another instance took its member name, or a lane returned
// ErrKilled.
func (s *Sink) Run(ctx context.Context) (err error) {
	defer func() { s.close(err) }()
	if s.cfg.Await != nil {
		if err := s.cfg.Await(ctx); err != nil {
			return nil
		}
	}
	s.log.Info("delivering", append(s.attrs(), "group", s.cfg.Group, "member", s.cfg.Member)...)
	err = s.poll.Run(ctx)
	if errors.Is(err, kafkaclient.ErrFenced) {
		return fmt.Errorf("%s: another instance is %s: %w", s.cfg.Name, s.cfg.Member, err)
	}
	return err
}

func (s *Sink) close(err error) {
	for _, lanes := range s.lanes {
		for _, l := range lanes {
			l.Close()
		}
	}
	s.cl.Close()
	if !errors.Is(err, ErrKilled) && !errors.Is(err, kafkaclient.ErrFenced) {
		kafkaclient.LeaveGroup(s.cfg.Brokers, s.cfg.Connect, s.cfg.Group, s.cfg.Member, s.log)
	}
}

// Ready reports whether the sink has reached the cluster.
func (s *Sink) Ready() bool { return s.poll.Ready() }

// Healthy is nil unless effects have failed for longer than StallAfter.
func (s *Sink) Healthy() error {
	if st, ok := s.failures.Stalled(); ok {
		return fmt.Errorf("%s to %s failing since %s: %s", s.cfg.Name, s.cfg.To, st.Since.UTC().Format(time.RFC3339), st.Reason)
	}
	return nil
}

// FailingSince is since when effects fail; zero while they go through.
func (s *Sink) FailingSince() time.Time { return s.failures.Since() }

func (s *Sink) attrs() []any { return append([]any(nil), s.cfg.Attrs...) }
