package registry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/txn/kafkaclient"
)

const (
	// writeAttempts bounds how often a write starts again after a failed
	// commit (step 4 of the package doc).
	writeAttempts = 10
	// writeTimeout bounds one write, whatever the HTTP client does: a write
	// that has begun is finished rather than left half done.
	writeTimeout = 30 * time.Second
)

// clientOpts are the options of every Kafka client of the registry: the
// brokers, Config.Connect, then extra.
func (r *Registry) clientOpts(extra ...kgo.Opt) []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(r.cfg.Brokers...)}
	opts = append(opts, r.cfg.Connect...)
	return append(opts, extra...)
}

// createTopic creates the state topic unless it exists: one partition,
// compacted, replicated like the shop's topics.
func (r *Registry) createTopic(ctx context.Context) error {
	meta, err := r.adm.BrokerMetadata(ctx)
	if err != nil {
		return fmt.Errorf("schema registry: reach brokers %v: %w", r.cfg.Brokers, err)
	}
	replicas := int16(min(len(meta.Brokers), 3))
	compact, minISR := "compact", "2"
	configs := map[string]*string{"cleanup.policy": &compact}
	if replicas == 3 {
		configs["min.insync.replicas"] = &minISR
	}
	_, err = r.adm.CreateTopic(ctx, 1, replicas, configs, r.cfg.Topic) // the topic's error, if any
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("schema registry: create topic %s: %w", r.cfg.Topic, err)
	}
	return nil
}

// defaultMaxMessage is Kafka's default max.message.bytes (message.max.bytes
// on the brokers), for a topic whose configuration does not say.
const defaultMaxMessage = 1048588

// recordOverhead bounds what a batch of one record adds to its key and
// value: the batch header (61 bytes) and the record's own fields (length,
// attributes, timestamp and offset deltas, key and value lengths, header
// count; at most 32 bytes as varints).
const recordOverhead = 61 + 32

// maxMessage is the largest record batch the state topic takes, its
// max.message.bytes.
func (r *Registry) maxMessage(ctx context.Context) (int, error) {
	configs, err := r.adm.DescribeTopicConfigs(ctx, r.cfg.Topic)
	if err != nil {
		return 0, fmt.Errorf("schema registry: describe topic %s: %w", r.cfg.Topic, err)
	}
	rc, err := configs.On(r.cfg.Topic, nil)
	if err != nil {
		return 0, fmt.Errorf("schema registry: describe topic %s: %w", r.cfg.Topic, err)
	}
	for _, c := range rc.Configs {
		if c.Key == "max.message.bytes" {
			if n, err := strconv.Atoi(c.MaybeValue()); err == nil && n > recordOverhead {
				return n, nil
			}
		}
	}
	return defaultMaxMessage, nil
}

// fits refuses, before anything is written, a record the state topic
// would refuse as too large: Kafka's MESSAGE_TOO_LARGE, answered with
// Confluent's error code in milliseconds.
func (r *Registry) fits(recs []*kgo.Record) error {
	for _, rec := range recs {
		if size := len(rec.Key) + len(rec.Value) + recordOverhead; size > r.maxRecord {
			return tooLarge("stored, it would be a record of %d bytes, and the topic %s takes at most %d (its max.message.bytes)",
				size, r.cfg.Topic, r.maxRecord)
		}
	}
	return nil
}

// permanent says whether Kafka refused a write for good: writing it again,
// as another writer or not, would be refused the same way. Anything else
// (fenced, most likely, or a coordinator moving) is worth taking the
// writer role again for.
func permanent(err error) bool {
	for _, p := range []error{kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.CorruptMessage,
		kerr.TopicAuthorizationFailed, kerr.TransactionalIDAuthorizationFailed, kerr.ClusterAuthorizationFailed,
		kerr.PolicyViolation, kerr.InvalidTopicException, kerr.UnsupportedForMessageFormat, kerr.InvalidRequiredAcks,
		kerr.SaslAuthenticationFailed, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, p) {
			return true
		}
	}
	return false
}

// follow applies the topic to the state, record by record in offset order,
// until Close.
func (r *Registry) follow() {
	defer close(r.followed)
	for {
		fetches := r.consumer.PollFetches(r.ctx)
		if r.ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		r.mu.Lock()
		moved := false
		fetches.EachRecord(func(rec *kgo.Record) {
			if !rec.Attrs.IsControl() {
				if err := r.st.apply(rec.Key, rec.Value); err != nil {
					r.log.Warn("skipping a record the registry cannot read", "offset", rec.Offset, "err", err)
				}
			}
			r.applied, moved = rec.Offset+1, true
		})
		if moved {
			close(r.advanced)
			r.advanced = make(chan struct{})
		}
		r.mu.Unlock()
		if errs := fetches.Errors(); len(errs) > 0 {
			r.log.Warn("reading the schema topic", "err", errs[0].Err)
			if !moved { // an error kgo does not retry itself would come straight back
				select {
				case <-r.ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		}
	}
}

// becomeReady waits until the follower has applied the topic up to where
// it ended at start.
func (r *Registry) becomeReady() {
	backoff := 50 * time.Millisecond
	for {
		end, err := r.endOffset(r.ctx)
		if err == nil {
			r.mu.Lock()
			r.target = end
			r.mu.Unlock()
			break
		}
		r.log.Info("looking for the end of the schema topic", "err", err)
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		}
	}
	if err := r.waitApplied(r.ctx, r.target); err != nil {
		return
	}
	r.ready.Store(true)
	close(r.readyCh)
	r.mu.RLock()
	r.log.Info("schema registry ready", "offset", r.applied, "subjects", len(r.st.subjects), "max_id", r.st.maxID)
	r.mu.RUnlock()
}

// endOffset is the topic's last stable offset: everything before it is
// committed or aborted.
func (r *Registry) endOffset(ctx context.Context) (int64, error) {
	offsets, err := r.adm.ListCommittedOffsets(ctx, r.cfg.Topic)
	if err != nil {
		return 0, fmt.Errorf("list end offset of %s: %w", r.cfg.Topic, err)
	}
	o, ok := offsets.Lookup(r.cfg.Topic, 0)
	if !ok {
		return 0, fmt.Errorf("list end offset of %s: no partition 0", r.cfg.Topic)
	}
	if o.Err != nil {
		return 0, fmt.Errorf("list end offset of %s: %w", r.cfg.Topic, o.Err)
	}
	return o.Offset, nil
}

// waitApplied waits until the follower has applied every offset before
// offset.
func (r *Registry) waitApplied(ctx context.Context, offset int64) error {
	for {
		r.mu.RLock()
		done, advanced := r.applied >= offset, r.advanced
		r.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-advanced:
		case <-r.followed:
			return errors.New("schema registry closed")
		case <-ctx.Done():
			return fmt.Errorf("wait for the schema topic to reach offset %d: %w", offset, ctx.Err())
		}
	}
}

// decide computes a write from the caught-up state: the records to commit
// (none: nothing to change), or an error to answer with. It runs with the
// state locked for reading and must not block.
type decide func(st *state) ([]*kgo.Record, error)

// write runs one change as the cluster's one writer: steps 1 to 5 of the
// package doc.
func (r *Registry) write(ctx context.Context, d decide) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.ctx.Err() != nil {
		return r.storeError("write", errors.New("schema registry closed"))
	}
	stop := context.AfterFunc(r.ctx, cancel)
	defer stop()

	var failed error
	for attempt := 1; attempt <= writeAttempts; attempt++ {
		if r.txn == nil {
			txn, err := r.takeWriter(ctx)
			if err != nil {
				return r.storeError("take the writer role", err)
			}
			r.txn = txn
		}
		if !r.cfg.skipCatchUp {
			if err := r.Sync(ctx); err != nil {
				return r.storeError("read the schema topic up to its end", err)
			}
		}
		r.mu.RLock()
		recs, err := d(r.st)
		r.mu.RUnlock()
		if err != nil || len(recs) == 0 {
			return err
		}
		if err := r.fits(recs); err != nil {
			return err
		}
		end, err := commit(ctx, r.txn, recs)
		if err == nil {
			if err := r.waitApplied(ctx, end); err != nil {
				return r.storeError("read back what was written", err)
			}
			return nil
		}
		// Whatever happened, this producer is done with: the next write
		// starts a new one.
		r.txn.Close()
		r.txn = nil
		if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
			r.log.Warn("Kafka refused a schema record as too large", "topic", r.cfg.Topic, "err", err)
			return tooLarge("Kafka refused its record as too large for the topic %s", r.cfg.Topic)
		}
		if permanent(err) {
			return r.storeError("write to the schema topic", err)
		}
		// Fenced, most likely: another instance took the writer role. A
		// new producer fences whoever holds the role now, and the
		// decision is made again on the state after it.
		r.log.Debug("schema write not committed; taking the writer role again", "attempt", attempt, "err", err)
		failed = err
		// Two instances that fence each other in turn would do so again
		// in step; a random pause, longer each time, lets one through.
		select {
		case <-time.After(rand.N(min(5*time.Millisecond<<attempt, 500*time.Millisecond))):
		case <-ctx.Done():
			return r.storeError("write to the schema topic", ctx.Err())
		}
	}
	return r.storeError(fmt.Sprintf("write to the schema topic (%d attempts)", writeAttempts), failed)
}

// takeWriter initialises the shared transactional ID, fencing the instance
// that held it.
func (r *Registry) takeWriter(ctx context.Context) (*kgo.Client, error) {
	cl, err := kgo.NewClient(r.clientOpts(
		kgo.TransactionalID(r.cfg.WriterID),
		kafkaclient.Transactions(),
		kgo.DefaultProduceTopic(r.cfg.Topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(int32(r.maxRecord)), // as large as the topic takes: fits has checked
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	)...)
	if err != nil {
		return nil, err
	}
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("initialise transactional ID %s: %w", r.cfg.WriterID, err)
	}
	r.log.Debug("schema registry took the writer role", "transactional_id", r.cfg.WriterID)
	return cl, nil
}

// commit writes recs in one transaction and returns the offset after the
// last of them.
func commit(ctx context.Context, txn *kgo.Client, recs []*kgo.Record) (int64, error) {
	if err := txn.BeginTransaction(); err != nil {
		return 0, err
	}
	results := txn.ProduceSync(ctx, recs...)
	if err := results.FirstErr(); err != nil {
		_ = txn.EndTransaction(ctx, kgo.TryAbort)
		return 0, err
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return 0, err
	}
	return results[len(results)-1].Record.Offset + 1, nil
}

// record is a record for the state topic's one partition; a nil value is a
// tombstone.
func record(key, value []byte) *kgo.Record {
	return &kgo.Record{Key: key, Value: value, Partition: 0}
}

// storeError is a failure to read or write the topic, as Confluent answers
// it: the answer says what failed, the log why (Kafka's own words stay
// there, out of the answer).
func (r *Registry) storeError(what string, err error) error {
	r.log.Error("schema registry: could not "+what, "topic", r.cfg.Topic, "err", err)
	return errf(500, sr.ErrStoreError.Code, "Error in the backend data store: could not %s; see the registry's log", what)
}
