// Package registry is the project's Confluent-compatible Schema Registry,
// for the stacks that run without Confluent's own (make run, make kafka-up).
// Its state lives in Kafka, so it survives restarts, and any number of
// instances on one cluster answer alike.
//
// # State
//
// Everything the registry knows is in a compacted topic, _schemas (one
// partition; replication min(3, brokers); min.insync.replicas=2 with three
// replicas), in Confluent's own record format:
//
//	key   {"keytype":"SCHEMA","subject":"orders-value","version":2,"magic":1}
//	value {"subject":"orders-value","version":2,"id":7,"schema":"…","deleted":false}
//	key   {"keytype":"CONFIG","subject":null,"magic":0}     (null: the global level)
//	value {"compatibilityLevel":"BACKWARD"}
//
// A SCHEMA value has "schemaType":"JSON" or "PROTOBUF" for those types
// (which another registry may have written; this one stores Avro only) and
// none for Avro, as Confluent writes it, and "references":[…] when the
// schema has any. A MODE record ({"mode":"READONLY"}) sets a mode as a
// CONFIG record sets a level. A soft delete rewrites the SCHEMA record with
// "deleted":true; a permanent delete writes a tombstone (null value) for it;
// a null CONFIG or MODE value removes a level or a mode. The state is a
// fold: the latest value of every key, applied in offset order; the next
// new ID is the highest ID the fold has seen, plus one. Compaction drops
// the records a tombstone supersedes, and the IDs in them, so a permanent
// delete also writes {"keytype":"MAX_ID","magic":0} → {"maxId":N}, the
// highest ID so far: an ID is never given to a second schema, even after a
// restart (a Confluent registry reading the topic would skip this record).
// Other key types (NOOP, DELETE_SUBJECT, …) are skipped. Each schema is
// parsed once, when the fold first sees its ID, and kept with its identity
// (see identity): lookups and checks compare and reuse, never parse the
// stored versions again. A registry creates the topic
// when it is missing.
//
// # Reading
//
// Every instance reads the topic from its start with read_committed and
// keeps following it. It is ready once it has applied the topic up to the
// last stable offset it found at start; until then Ready returns an error
// and every request gets 503 with error code 50003. A write on another
// instance shows on this one within a fetch round trip; Sync waits for it.
//
// # Writing: one writer, chosen by Kafka
//
// Every instance uses the same transactional ID (Config.WriterID,
// "schema-registry-writer" by default), and the writer is the instance that
// initialised it last: Kafka's producer fencing chooses it. A write
// (register, PUT or DELETE of a level, a delete) takes an instance's write
// mutex and then:
//
//  1. initialises the transactional producer unless the instance holds it
//     already. InitProducerID fences the previous holder, and returns only
//     once that holder's last transaction is committed or aborted;
//  2. catches up: reads the topic's last stable offset and waits until the
//     follower has applied everything before it;
//  3. decides against that state: the compatibility check; the subject's ID
//     for a schema it holds already; the ID of an identical schema under
//     another subject, as Confluent does; else the highest ID + 1; the
//     highest version + 1;
//  4. writes the records in a transaction and commits. A failed commit
//     (fenced: another instance initialised meanwhile) starts again at 1
//     after a random pause, at most ten times in all; a refusal that no
//     second try can change (MESSAGE_TOO_LARGE, an authorization error)
//     is answered at once;
//  5. waits until the follower has applied its own records, and answers
//     from the state.
//
// Why two instances never give one ID to two schemas: a commit succeeds
// only if no other instance initialised the transactional ID after this one
// did, or it would have been fenced, so nobody else committed in between.
// And this instance's initialisation finished every transaction committed
// before it, so the last stable offset read in step 2 lies after all of
// them. Each committed write was therefore decided on a state that holds
// every write committed before it: the writes are serial in commit order,
// and no two can both pick "highest ID + 1" for different schemas. Both
// halves are needed, and the tests show each one missing: instances with
// different WriterIDs (no fencing), and an instance that skips step 2.
//
// # Compatibility and REST
//
// The registry stores Avro only: every schema is parsed with hamba/avro
// before it is stored, and JSON Schema and Protobuf are refused with 422
// (error code 42201), as is anything that does not parse; /schemas/types
// says AVRO. Compatibility is checked at the subject's level (transitive
// levels against every live version), an incompatible schema is refused
// with 409 as Confluent does, and a subject does not change its type
// unless its level is NONE. Two schemas are the same schema when their
// canonical texts are equal (canonicalAvro: numbers as written, never
// through a float). The REST surface, answers and error codes are
// Confluent's (routes in http.go; docs/registry.md compares them endpoint
// by endpoint): subject names are bounded (names.go), modes READWRITE and
// READONLY are kept and enforced (mode.go), and contexts other than the
// default one are refused rather than served from it. A schema too large
// for the topic (its max.message.bytes) is refused with 422 (error code
// 42209) before anything is written.
//
// With Config.Users set, every request needs HTTP basic auth (401
// otherwise) and writes need a principal in Config.Writers (403, error code
// 40301, otherwise).
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Defaults of Config.
const (
	DefaultTopic    = "_schemas"
	DefaultWriterID = "schema-registry-writer"
	DefaultWriter   = "admin"
)

// Config places a registry on a Kafka cluster.
type Config struct {
	Brokers []string // seed brokers
	Topic   string   // the state topic; default _schemas
	// Connect are extra options for the registry's Kafka clients, such as
	// SASL credentials or TLS.
	Connect []kgo.Opt
	// WriterID is the transactional ID every instance on the cluster shares
	// to elect one writer; default schema-registry-writer.
	WriterID string
	// Users are the HTTP basic auth credentials, user to password; nil
	// serves everyone.
	Users map[string]string
	// Writers are the users that may write when Users is set; default
	// admin.
	Writers []string
	Logger  *slog.Logger // default slog.Default()

	// skipCatchUp is a test hook: writes decide on whatever the follower
	// has applied, without step 2 of the package doc.
	skipCatchUp bool
}

// Registry is one instance of the registry on a cluster.
type Registry struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler

	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc
	adm      *kadm.Client  // topic creation and end offsets
	consumer *kgo.Client   // the follower's
	followed chan struct{} // closed when the follower stops

	mu       sync.RWMutex
	st       *state
	applied  int64         // the offset after the last record applied
	advanced chan struct{} // closed, and replaced, whenever applied moves
	target   int64         // what must be applied to be ready

	ready   atomic.Bool
	readyCh chan struct{} // closed once ready

	wmu sync.Mutex  // one write at a time in this instance
	txn *kgo.Client // the transactional producer, nil until initialised (or after a failure)
	// maxRecord is the largest record the topic takes (its
	// max.message.bytes): fits refuses a larger one before writing.
	maxRecord int

	closeOnce sync.Once
}

// Open starts a registry instance on the cluster: it creates the topic if
// it is missing and starts reading it. It returns without waiting for the
// state: see WaitReady.
func Open(ctx context.Context, cfg Config) (*Registry, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("schema registry: no Kafka brokers")
	}
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	if cfg.WriterID == "" {
		cfg.WriterID = DefaultWriterID
	}
	if len(cfg.Writers) == 0 {
		cfg.Writers = []string{DefaultWriter}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Registry{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "schema-registry", "topic", cfg.Topic),
		followed: make(chan struct{}),
		st:       newState(),
		advanced: make(chan struct{}),
		target:   -1,
		readyCh:  make(chan struct{}),
	}
	admin, err := kgo.NewClient(r.clientOpts()...)
	if err != nil {
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	r.adm = kadm.NewClient(admin)
	if err := r.createTopic(ctx); err != nil {
		r.adm.Close()
		return nil, err
	}
	if r.maxRecord, err = r.maxMessage(ctx); err != nil {
		r.adm.Close()
		return nil, err
	}
	r.consumer, err = kgo.NewClient(r.clientOpts(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Commit markers take offsets too: keeping them lets the follower
		// tell when it has reached the last stable offset.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(time.Second),
	)...)
	if err != nil {
		r.adm.Close()
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.handler = r.routes()
	go r.follow()
	go r.becomeReady()
	return r, nil
}

// Handler serves the Confluent Schema Registry REST API.
func (r *Registry) Handler() http.Handler { return r.handler }

// Ready returns nil once the registry has read its state, and an error that
// says how far it is before that.
func (r *Registry) Ready() error {
	if r.ready.Load() {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.target < 0 {
		return fmt.Errorf("schema registry not ready: looking for the end of %s", r.cfg.Topic)
	}
	return fmt.Errorf("schema registry not ready: read %s up to offset %d of %d", r.cfg.Topic, r.applied, r.target)
}

// WaitReady waits until the registry is ready or ctx is done.
func (r *Registry) WaitReady(ctx context.Context) error {
	select {
	case <-r.readyCh:
		return nil
	case <-r.followed:
		return errors.New("schema registry closed")
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", r.Ready(), ctx.Err())
	}
}

// Sync waits until this instance has applied everything committed to the
// topic so far, by any instance.
func (r *Registry) Sync(ctx context.Context) error {
	end, err := r.endOffset(ctx)
	if err != nil {
		return err
	}
	return r.waitApplied(ctx, end)
}

// Close stops the instance. A write in progress finishes first; later ones
// fail.
func (r *Registry) Close() {
	r.closeOnce.Do(func() {
		r.wmu.Lock()
		r.cancel()
		if r.txn != nil {
			r.txn.Close()
			r.txn = nil
		}
		r.wmu.Unlock()
		r.consumer.Close()
		<-r.followed
		r.adm.Close()
	})
}
