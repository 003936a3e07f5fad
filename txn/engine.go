// Package txn is the exactly-once engine of the shop: it consumes a topic in a
// consumer group, turns each record into output records with a Handler, and
// commits the outputs and the consumed offsets in one Kafka transaction.
//
// The guarantees, and where they come from:
//   - Outputs, dead letters and offsets commit atomically (a transaction with
//     TxnOffsetCommit), so a record's effects are visible once or never.
//   - Consumers read with read_committed, so nothing of an aborted
//     transaction is ever read downstream.
//   - kgo.GroupTransactSession aborts a transaction that spans a rebalance,
//     so an instance that lost a partition never commits work on it.
//   - The transactional ID is stable per instance, so a restarted instance
//     fences its previous incarnation (KIP-447 fencing by producer epoch).
//
// A record that can never be processed (poison) is written to a dead letter
// queue inside the same transaction. Any other failure aborts and retries the
// same records after a backoff: nothing is skipped.
package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Handler turns one input record into the records to produce for it. An error
// that implements Poison sends the input record to the dead letter queue; any
// other error aborts the transaction, which is retried.
type Handler func(ctx context.Context, in *kgo.Record) ([]*kgo.Record, error)

// Poison is an error for a record that will fail however often it is retried.
// ErrorClass says why, in the vocabulary of the DLQ.
type Poison interface {
	error
	ErrorClass() string
}

// DeadLetter builds the DLQ record for a poison input record.
type DeadLetter func(in *kgo.Record, class string, reason error) (*kgo.Record, error)

// Config configures an Engine. Brokers, Group, Topic, TransactionalID,
// Handler and DeadLetter are required.
type Config struct {
	Brokers         []string
	Group           string
	Topic           string
	TransactionalID string
	Handler         Handler
	DeadLetter      DeadLetter

	// A transaction covers at most MaxRecords records and lasts about
	// MaxInterval, whichever comes first. Larger batches amortise the
	// commit; shorter intervals lower end-to-end latency. MaxInterval is
	// meant to be the bound that holds under load: a transaction costs a
	// fixed price on top of an at-least-once commit (a few round trips on
	// the embedded cluster; on real brokers also the replicated writes of
	// the transaction log, some 20ms on a small machine), which the
	// interval amortises. With a backlog the engine goes through 1,000
	// records in 2 to 3ms, so a low record bound would commit every few
	// milliseconds and pay that price each time; 100,000 records is more
	// than 100ms of work at full speed. MaxRecords bounds the work an
	// aborted transaction redoes; the producer's buffer (10,000 records
	// in flight) bounds the memory.
	MaxRecords  int           // default 100,000
	MaxInterval time.Duration // default 100ms

	// Backoff after an aborted transaction doubles from MinBackoff to
	// MaxBackoff and resets after a commit.
	MinBackoff time.Duration // default 100ms
	MaxBackoff time.Duration // default 5s

	// TransactionTimeout bounds how long a transaction of a dead
	// instance blocks its partitions before the broker aborts it.
	TransactionTimeout time.Duration // default 10s
	// SessionTimeout bounds how long a dead instance holds its
	// partitions before the group rebalances them.
	SessionTimeout time.Duration // default 10s

	// InstanceID, if set, makes this a static member of the group: an
	// instance restarted after a crash takes its partitions back at once,
	// without waiting SessionTimeout for a rebalance. A graceful stop
	// still leaves the group, so its partitions move on at once too.
	InstanceID string

	// Mode AtLeastOnce runs the same loop without transactions
	// (produce, then commit offsets): the control for exactly-once tests.
	Mode Mode

	Logger *slog.Logger
	// Opts are extra client options, such as metrics hooks.
	Opts []kgo.Opt
}

// Mode is the delivery guarantee of an Engine.
type Mode int

const (
	ExactlyOnce Mode = iota
	AtLeastOnce
)

func (c *Config) defaults() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("txn: no brokers")
	case c.Group == "" || c.Topic == "":
		return errors.New("txn: group and topic are required")
	case c.TransactionalID == "" && c.Mode == ExactlyOnce:
		return errors.New("txn: a transactional ID is required")
	case c.Handler == nil || c.DeadLetter == nil:
		return errors.New("txn: handler and dead letter builder are required")
	}
	if c.MaxRecords <= 0 {
		c.MaxRecords = 100_000
	}
	if c.MaxInterval <= 0 {
		c.MaxInterval = 100 * time.Millisecond
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(5*time.Second, c.MinBackoff)
	}
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = 10 * time.Second
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Stats are the engine's counters since it started.
type Stats struct {
	Committed    int64 // transactions committed
	Aborted      int64 // transactions aborted (then retried)
	Records      int64 // input records committed
	Produced     int64 // output records committed, dead letters excluded
	DeadLettered int64 // input records committed to the dead letter queue

	// DeadLettersByClass splits DeadLettered by the Poison's ErrorClass.
	DeadLettersByClass map[string]int64
}

type counters struct {
	committed, aborted, records, produced atomic.Int64

	mu      sync.Mutex
	byClass map[string]int64
}

// addDeadLetters counts the dead letters of a committed transaction.
func (c *counters) addDeadLetters(byClass map[string]int64) {
	if len(byClass) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byClass == nil {
		c.byClass = make(map[string]int64)
	}
	for class, n := range byClass {
		c.byClass[class] += n
	}
}

// Engine runs one consume-transform-produce loop.
type Engine struct {
	cfg   Config
	sess  *kgo.GroupTransactSession // exactly-once
	cl    *kgo.Client               // at-least-once
	stats counters
	ready atomic.Bool

	// BatchObserver, if set, is told of every transaction's end: how
	// many input records it held and whether it committed.
	BatchObserver func(records int, committed bool, took time.Duration)
}

// New connects an engine; it starts consuming when Run is called.
func New(cfg Config) (*Engine, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(cfg.SessionTimeout / 10),
		kgo.OnPartitionsAssigned(e.logAssignment("assigned")),
		kgo.OnPartitionsRevoked(e.logAssignment("revoked")),
		kgo.OnPartitionsLost(e.logAssignment("lost")),
	}, cfg.Opts...)
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	var err error
	if cfg.Mode == ExactlyOnce {
		opts = append(opts,
			kgo.TransactionalID(cfg.TransactionalID),
			kgo.TransactionTimeout(cfg.TransactionTimeout),
			kgo.RequireStableFetchOffsets(),
		)
		e.sess, err = kgo.NewGroupTransactSession(opts...)
		if err == nil {
			e.cl = e.sess.Client()
		}
	} else {
		opts = append(opts, kgo.DisableAutoCommit())
		e.cl, err = kgo.NewClient(opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("txn: %w", err)
	}
	return e, nil
}

func (e *Engine) logAssignment(what string) func(context.Context, *kgo.Client, map[string][]int32) {
	return func(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
		if len(parts) > 0 {
			e.cfg.Logger.Info("partitions "+what, "topic", e.cfg.Topic, "partitions", parts[e.cfg.Topic])
		}
	}
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	e.stats.mu.Lock()
	byClass := maps.Clone(e.stats.byClass)
	e.stats.mu.Unlock()
	var dead int64
	for _, n := range byClass {
		dead += n
	}
	return Stats{
		Committed:          e.stats.committed.Load(),
		Aborted:            e.stats.aborted.Load(),
		Records:            e.stats.records.Load(),
		Produced:           e.stats.produced.Load(),
		DeadLettered:       dead,
		DeadLettersByClass: byClass,
	}
}

// Client is the engine's Kafka client, for metrics and health checks only.
func (e *Engine) Client() *kgo.Client { return e.cl }

// Ready reports whether the engine has polled the group at least once.
func (e *Engine) Ready() bool { return e.ready.Load() }

// ErrFenced means another instance took over this transactional ID: this one
// must stop, or it would commit stale work.
var ErrFenced = errors.New("txn: fenced by a newer instance with the same transactional ID")
