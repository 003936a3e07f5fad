// Package txn is the shop's exactly-once engine: a consumer group reads one
// topic, a Handler turns each record into output records, and the outputs
// commit with the consumed offsets in one Kafka transaction.
//
// The guarantees, and where they come from:
//   - Outputs and offsets commit atomically (a transaction with
//     TxnOffsetCommit), so a record's effects are visible once or never.
//   - Consumers read with read_committed, so nothing of an aborted
//     transaction is ever read downstream.
//   - kgo.GroupTransactSession aborts a transaction that spans a rebalance,
//     so an instance that lost a partition never commits work on it.
//   - The transactional ID is stable per instance, so a restarted instance
//     fences its previous incarnation (KIP-447 fencing by producer epoch).
//
// The engine knows records only: records in, records or an error out. A
// handler error aborts the transaction, and the same records are retried
// after a backoff; nothing is skipped. Turning a record that can never be
// processed into a dead letter is a Middleware's job: the dead letter is an
// output like any other. When Kafka refuses an output for good (too large,
// invalid), the engine aborts and hands the refusal to the handler with the
// same record on the retry (see Refused), so that the middleware can
// dead-letter it instead of the engine retrying forever.
//
// The engine is the root of the shop's Kafka runtime. Beneath it: stage
// (the engine behind the deadletter middleware, as a service runs it), view
// (what was committed, read back and checkpointed), sink (a side effect
// after the commit, at least once), lag and metrics; and what they all
// share, kafkaclient and loop. None of them imports a service.
package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn/kafkaclient"
	"github.com/blackfriday-kafka/shop/txn/loop"
)

// Handler turns one input record into the records to produce for it. An
// error aborts the transaction, which is retried.
type Handler func(ctx context.Context, in *kgo.Record) ([]*kgo.Record, error)

// Middleware wraps a Handler with behaviour of its own, such as timing it or
// turning poison into dead letters.
type Middleware func(Handler) Handler

// Chain wraps h in mws, the first outermost.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Mode is the delivery guarantee of an Engine.
type Mode int

const (
	// ExactlyOnce commits outputs and offsets in one transaction.
	ExactlyOnce Mode = iota
	// AtLeastOnce produces, then commits offsets: a crash in between
	// replays the batch. It is the control that shows, in tests and
	// chaos, what the transactions prevent.
	AtLeastOnce
)

// Config configures an Engine. Brokers, Group, Topic, Handler and, for
// ExactlyOnce, TransactionalID are required; every other field has a default.
type Config struct {
	Brokers         []string
	Group           string
	Topic           string
	TransactionalID string
	Handler         Handler
	Mode            Mode

	// A transaction ends once the records in hand are processed and
	// nothing more waits in the client, and at the latest after
	// MaxRecords records or MaxInterval, whichever comes first. Larger
	// batches amortise the commit; shorter intervals lower end-to-end
	// latency. MaxInterval is
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
	TransactionTimeout time.Duration // default DefaultTransactionTimeout
	// SessionTimeout bounds how long a dead instance holds its
	// partitions before the group rebalances them.
	SessionTimeout time.Duration // default DefaultSessionTimeout
	// EndTimeout bounds the commit or abort of a transaction, also at
	// shutdown, when the run context is already cancelled.
	EndTimeout time.Duration // default 10s
	// StallAfter is how long the engine may retry the same records before
	// it reports the stage stalled (Stalled), and logs so every minute.
	StallAfter time.Duration // default 1 minute

	// InstanceID, if set, makes this a static member of the group: an
	// instance restarted after a crash takes its partitions back at once,
	// without waiting SessionTimeout for a rebalance. A graceful stop
	// still leaves the group, so its partitions move on at once too.
	InstanceID string

	Logger *slog.Logger
	// Connect are the options any client needs to reach the cluster
	// besides Brokers, such as SASL credentials: the engine's own client
	// and the one that leaves the group at shutdown use them.
	Connect []kgo.Opt
	// Opts are extra options of the engine's client.
	Opts []kgo.Opt
	// Hooks, if set, gives the hooks of each client the engine builds,
	// such as its metrics: after a transaction that outlived
	// TransactionTimeout the engine replaces its client, and the new one
	// needs hooks of its own.
	Hooks func() []kgo.Hook
	// OnBatch, if set, is told of the end of every transaction, on the
	// engine's goroutine: it must not block.
	OnBatch func(Batch)
	// OnAssigned, if set, is called when the group gives this instance
	// partitions of Topic, before any of their records reach the handler:
	// where a handler restores the state it keeps per partition. It may
	// block (the group keeps its heartbeat), and should return once ctx
	// is done. OnRevoked is called when partitions are taken away. After
	// a transaction whose end failed, when no one can say whether it
	// committed, the engine reads again from the group's offsets and
	// calls OnRevoked then OnAssigned for the partitions it holds: state
	// kept per partition is restored from Kafka, as at an assignment.
	OnAssigned func(ctx context.Context, partitions []int32)
	OnRevoked  func(partitions []int32)
}

// The timeouts the services run with. An instance paused for longer than
// both wakes up a zombie: its partitions have moved on and its transaction
// was aborted (make chaos FAULTS=pause makes such pauses).
const (
	DefaultTransactionTimeout = 10 * time.Second
	DefaultSessionTimeout     = 10 * time.Second
)

func (c *Config) defaults() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("txn: no brokers")
	case c.Group == "" || c.Topic == "":
		return errors.New("txn: group and topic are required")
	case c.TransactionalID == "" && c.Mode == ExactlyOnce:
		return errors.New("txn: a transactional ID is required")
	case c.Handler == nil:
		return errors.New("txn: a handler is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.MaxRecords <= 0 {
		c.MaxRecords = 100_000
	}
	def(&c.MaxInterval, 100*time.Millisecond)
	def(&c.MinBackoff, 100*time.Millisecond)
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(5*time.Second, c.MinBackoff)
	}
	def(&c.TransactionTimeout, DefaultTransactionTimeout)
	def(&c.SessionTimeout, DefaultSessionTimeout)
	def(&c.EndTimeout, 10*time.Second)
	def(&c.StallAfter, time.Minute)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Batch is one transaction as OnBatch sees it.
type Batch struct {
	Records   int           // input records it consumed
	Outputs   []*kgo.Record // records it produced for them
	Committed bool
	Took      time.Duration // from begin to commit or abort
	Err       error         // why it did not commit
}

// Stats are the engine's counters since it started.
type Stats struct {
	Committed int64 // transactions committed
	Aborted   int64 // transactions aborted (then retried)
	Records   int64 // input records committed
	Produced  int64 // output records committed

	// Recoveries of the producer, each also a warning in the log.
	RefusedBatches int64 // produce batches Kafka refused and the client resent after a metadata refresh
	ProducerResets int64 // batch errors that failed the producer: the transaction aborted
	EpochBumps     int64 // producer re-initialisations after the first (a new epoch)
	RetriedEnds    int64 // commits or aborts that failed and were settled by recover
	// Renewals counts clients replaced because the coordinator aborted a
	// transaction that outlived TransactionTimeout.
	Renewals int64
	// AddPartitions counts AddPartitionsToTxn requests: more than one per
	// broker and transaction are CONCURRENT_TRANSACTIONS retries.
	AddPartitions int64
}

// Stall is a stage retrying the same records for longer than StallAfter.
type Stall = loop.Stall

// Engine runs one consume-transform-produce loop.
type Engine struct {
	cfg  Config
	opts []kgo.Opt // of every client the engine builds
	// client is the engine's Kafka client; renew replaces it.
	client atomic.Pointer[kgo.Client]
	c      committer
	poll   *loop.Poll

	committed, aborted, records, produced, retriedEnds, renewals atomic.Int64
	rec                                                          *recoveries

	// refused are the records whose outputs Kafka refused for good, by
	// where they sit: the retry hands the refusal to the handler.
	refused map[position]error

	failures *loop.Failures

	mu   sync.Mutex
	held map[int32]bool // the partitions of Topic assigned to this instance
}

type position struct {
	topic     string
	partition int32
	offset    int64
}

func at(r *kgo.Record) position { return position{r.Topic, r.Partition, r.Offset} }

// New connects an engine; it starts consuming when Run is called.
func New(cfg Config) (*Engine, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, refused: make(map[position]error), rec: &recoveries{log: cfg.Logger.With("topic", cfg.Topic)}}
	e.poll = &loop.Poll{Name: "txn", Client: e.Client, Max: min(pollChunk, cfg.MaxRecords), Log: cfg.Logger,
		MinBackoff: cfg.MinBackoff, MaxBackoff: cfg.MaxBackoff, Step: e.step,
		Retrying: func(backoff time.Duration) {
			cfg.Logger.Warn("transaction aborted, retrying the same records", "topic", cfg.Topic, "backoff", backoff)
		}}
	e.failures = &loop.Failures{Topic: cfg.Topic, After: cfg.StallAfter, Log: cfg.Logger, Attrs: []any{"topic", cfg.Topic},
		Lines: loop.Lines{Stalled: "stage stalled: the same records keep failing", Ended: "stage moving again"}}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.WithLogger(e.rec),
		kgo.WithHooks(e.rec),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(kafkaclient.FetchMaxWait),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(cfg.SessionTimeout / 10),
		kgo.OnPartitionsAssigned(e.assigned),
		kgo.OnPartitionsRevoked(e.revoked("revoked")),
		kgo.OnPartitionsLost(e.revoked("lost")),
	}, append(cfg.Connect, cfg.Opts...)...)
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	e.opts = opts
	if err := e.connect(); err != nil {
		return nil, err
	}
	return e, nil
}

// connect builds the engine's client; on failure the engine keeps the
// one it had.
func (e *Engine) connect() error {
	opts := e.opts
	if e.cfg.Hooks != nil {
		opts = append(slices.Clip(opts), kgo.WithHooks(e.cfg.Hooks()...))
	}
	newClient := newAtLeastOnce
	if e.cfg.Mode == ExactlyOnce {
		newClient = newTransactional
	}
	c, cl, err := newClient(e, opts)
	if err != nil {
		return fmt.Errorf("txn: %w", err)
	}
	e.c = c
	e.client.Store(cl)
	return nil
}

func (e *Engine) assigned(ctx context.Context, _ *kgo.Client, parts map[string][]int32) {
	if len(parts[e.cfg.Topic]) == 0 {
		return
	}
	e.cfg.Logger.Info("partitions assigned", "topic", e.cfg.Topic, "partitions", parts[e.cfg.Topic])
	e.mu.Lock()
	if e.held == nil {
		e.held = make(map[int32]bool)
	}
	for _, p := range parts[e.cfg.Topic] {
		e.held[p] = true
	}
	e.mu.Unlock()
	if e.cfg.OnAssigned != nil {
		e.cfg.OnAssigned(ctx, parts[e.cfg.Topic])
	}
}

func (e *Engine) revoked(what string) func(context.Context, *kgo.Client, map[string][]int32) {
	return func(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
		if len(parts[e.cfg.Topic]) == 0 {
			return
		}
		e.cfg.Logger.Info("partitions "+what, "topic", e.cfg.Topic, "partitions", parts[e.cfg.Topic])
		e.mu.Lock()
		for _, p := range parts[e.cfg.Topic] {
			delete(e.held, p)
		}
		e.mu.Unlock()
		if e.cfg.OnRevoked != nil {
			e.cfg.OnRevoked(parts[e.cfg.Topic])
		}
	}
}

// restoreHeld has the handler's state restored for the partitions this
// instance holds, after a recovery made it unknown (see OnAssigned).
func (e *Engine) restoreHeld(ctx context.Context) {
	if e.cfg.OnAssigned == nil {
		return
	}
	e.mu.Lock()
	parts := slices.Sorted(maps.Keys(e.held))
	e.mu.Unlock()
	if len(parts) == 0 {
		return
	}
	if e.cfg.OnRevoked != nil {
		e.cfg.OnRevoked(parts)
	}
	e.cfg.OnAssigned(ctx, parts)
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	return Stats{
		Committed:      e.committed.Load(),
		Aborted:        e.aborted.Load(),
		Records:        e.records.Load(),
		Produced:       e.produced.Load(),
		RefusedBatches: e.rec.refused.Load(),
		ProducerResets: e.rec.resets.Load(),
		EpochBumps:     max(0, e.rec.inits.Load()-1),
		RetriedEnds:    e.retriedEnds.Load(),
		Renewals:       e.renewals.Load(),
		AddPartitions:  e.rec.addsParts.Load(),
	}
}

// Client is the engine's Kafka client, for metrics and health checks only.
// It changes when the engine renews its client: ask again each time.
func (e *Engine) Client() *kgo.Client { return e.client.Load() }

// Ready reports whether the engine has reached the cluster.
func (e *Engine) Ready() bool { return e.poll.Ready() }

// Stalled reports the stall of the stage, if it has retried the same
// records for longer than StallAfter.
func (e *Engine) Stalled() (Stall, bool) { return e.failures.Stalled() }

// ErrFenced means another instance took over this transactional ID: this one
// must stop, or it would commit stale work.
var ErrFenced = kafkaclient.ErrFenced
