package txn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// pollChunk is how many records the loop takes from the client at a time.
// Every record polled must be processed before the transaction ends (its
// offset commits with it), so small chunks keep a transaction close to
// MaxInterval even when each record is slow; the rest waits in the client.
const pollChunk = 16

// endTimeout bounds the commit or abort of a transaction, also at shutdown,
// when the run context is already cancelled. A variable for tests.
var endTimeout = 10 * time.Second

// Run consumes until ctx is cancelled, then ends the transaction in hand
// (committing what was fully processed), leaves the group and returns nil.
// It returns an error only when the engine cannot go on, for example
// ErrFenced when a newer instance took over its transactional ID.
func (e *Engine) Run(ctx context.Context) (err error) {
	// A fenced instance must not leave the group: its instance ID now
	// belongs to the newer instance, which leaving would take out.
	defer func() { e.close(!errors.Is(err, ErrFenced)) }()
	if err := e.cl.Ping(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("txn: cluster unreachable: %w", err)
	}
	e.ready.Store(true)
	defer e.ready.Store(false)

	backoff := e.cfg.MinBackoff
	for ctx.Err() == nil {
		fetches := e.cl.PollRecords(ctx, min(pollChunk, e.cfg.MaxRecords))
		if fetches.IsClientClosed() || ctx.Err() != nil {
			// Polled records that were never begun on are simply
			// not committed: the next owner reads them again.
			return nil
		}
		if err := e.checkFetches(fetches); err != nil {
			return err
		}
		if fetches.NumRecords() == 0 {
			continue
		}
		committed, err := e.batch(ctx, fetches.Records())
		if err != nil {
			return err
		}
		if committed {
			backoff = e.cfg.MinBackoff
			continue
		}
		e.cfg.Logger.Warn("transaction aborted, retrying the same records", "topic", e.cfg.Topic, "backoff", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, e.cfg.MaxBackoff)
	}
	return nil
}

func (e *Engine) close(leave bool) {
	if e.sess != nil {
		e.sess.Close()
	} else {
		e.cl.Close()
	}
	if leave && e.cfg.InstanceID != "" {
		e.leave()
	}
}

// leave takes a static member out of its group: a static member's client
// does not leave on close, which would strand its partitions until the
// session times out.
func (e *Engine) leave() {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.cfg.Brokers...))
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).LeaveGroup(ctx, kadm.LeaveGroup(e.cfg.Group).InstanceIDs(e.cfg.InstanceID)); err != nil {
		e.cfg.Logger.Warn("leaving the group", "group", e.cfg.Group, "instance", e.cfg.InstanceID, "err", err)
	}
}

// checkFetches logs the errors of a poll. It returns ErrFenced when the
// group refused this member because another one joined with the same
// instance ID: the newer instance has the partitions for good, and this one
// would otherwise try to join again forever, holding nothing.
func (e *Engine) checkFetches(fetches kgo.Fetches) error {
	var fencedErr error
	fetches.EachError(func(topic string, partition int32, err error) {
		switch {
		case errors.Is(err, kerr.FencedInstanceID):
			fencedErr = err
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			// A poll that reaches its deadline or shutdown is not a failure.
		default:
			e.cfg.Logger.Warn("fetch failed", "topic", topic, "partition", partition, "err", err)
		}
	})
	if fencedErr != nil {
		return fmt.Errorf("%w: %v", ErrFenced, fencedErr)
	}
	return nil
}

// batch runs one transaction: it processes the records in hand, keeps
// polling until the batch is full or MaxInterval has passed, then commits.
// It reports whether the transaction committed.
func (e *Engine) batch(ctx context.Context, records []*kgo.Record) (bool, error) {
	start := time.Now()
	if e.sess != nil {
		if err := e.sess.Begin(); err != nil {
			return false, fmt.Errorf("txn: begin: %w", err)
		}
	}
	var (
		produced = new(promises)
		firsts   = make(map[string]map[int32]kgo.EpochOffset)
		n        int
		outs     int
		dead     = make(map[string]int64) // by error class
		failed   error
		// fencedNow is set when the group fenced this instance
		// mid-batch: the batch aborts and Run stops.
		fencedNow error
	)
	deadline := start.Add(e.cfg.MaxInterval)
	for {
		for _, in := range records {
			rememberFirst(firsts, in)
			out, class, err := e.process(ctx, in)
			if err != nil {
				failed = err
				break
			}
			for _, r := range out {
				// Outputs of processed records must not fail
				// because shutdown began: they commit or abort
				// with the batch.
				e.cl.Produce(context.WithoutCancel(ctx), r, produced.promise())
			}
			n++
			if class != "" {
				dead[class]++
			} else {
				outs += len(out)
			}
		}
		if failed != nil || n >= e.cfg.MaxRecords || ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
		pollCtx, cancel := context.WithDeadline(ctx, deadline)
		fetches := e.cl.PollRecords(pollCtx, min(pollChunk, e.cfg.MaxRecords-n))
		cancel()
		if fetches.IsClientClosed() {
			break
		}
		if err := e.checkFetches(fetches); err != nil {
			failed, fencedNow = err, err
			break
		}
		records = fetches.Records()
	}

	if failed == nil {
		// Every record of the batch is in hand: send what the producer
		// still holds back for its linger (10ms by default) now, rather
		// than wait it out, which left the engine idle for most of each
		// transaction. Flush fails only with its context.
		_ = e.cl.Flush(context.WithoutCancel(ctx))
		failed = produced.wait()
	}
	if failed != nil && ctx.Err() == nil {
		e.cfg.Logger.Warn("batch failed", "topic", e.cfg.Topic, "records", n, "err", failed)
	}
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
	defer cancel()
	committed, err := e.end(endCtx, failed == nil, firsts)
	if e.BatchObserver != nil {
		e.BatchObserver(n, committed, time.Since(start))
	}
	if fencedNow != nil {
		return false, fencedNow
	}
	if err != nil {
		if fenced(err) {
			return false, fmt.Errorf("%w: %v", ErrFenced, err)
		}
		e.cfg.Logger.Warn("ending transaction failed", "topic", e.cfg.Topic, "err", err)
		if e.sess != nil {
			if err := e.recover(ctx); err != nil {
				return false, err
			}
		}
	}
	if !committed {
		e.stats.aborted.Add(1)
		return false, nil
	}
	e.stats.committed.Add(1)
	e.stats.records.Add(int64(n))
	e.stats.produced.Add(int64(outs))
	e.stats.addDeadLetters(dead)
	return true, nil
}

func fenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}

// recover follows a transaction whose end failed, for example because its
// coordinator died and the commit was sent but not answered in time. The
// client then still holds the transaction (a new Begin would fail), and the
// commit may or may not have happened. recover aborts it, retrying until
// the cluster answers (the abort bumps the producer epoch, which settles an
// unconfirmed commit either way), then moves the consumer to the offsets
// the group really committed: the client only remembers the offsets of its
// last confirmed commit, and reading again from there would process a
// second time what the unconfirmed commit did commit.
func (e *Engine) recover(ctx context.Context) error {
	backoff := e.cfg.MinBackoff
	for {
		endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
		_, err := e.sess.End(endCtx, kgo.TryAbort)
		cancel()
		if err == nil {
			break
		}
		if fenced(err) {
			return fmt.Errorf("%w: %v", ErrFenced, err)
		}
		if ctx.Err() != nil {
			// Shutting down: the broker aborts what is left at the
			// transaction timeout, and the next owner of the
			// partitions reads the committed offsets.
			return nil
		}
		e.cfg.Logger.Warn("aborting the unfinished transaction failed, retrying", "topic", e.cfg.Topic, "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, e.cfg.MaxBackoff)
	}
	for ctx.Err() == nil {
		err := e.rewind(ctx)
		if err == nil {
			return nil
		}
		e.cfg.Logger.Warn("reading the group's committed offsets failed, retrying", "topic", e.cfg.Topic, "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, e.cfg.MaxBackoff)
	}
	return nil
}

// rewind sets the consumer to the offsets the group committed, as the
// broker has them once no transaction is pending on them. A rebalance in
// the meantime fetches them anew, so rewind starts over if the group
// generation changed while it asked.
func (e *Engine) rewind(ctx context.Context) error {
	_, gen := e.cl.GroupMetadata()
	fetchCtx, cancel := context.WithTimeout(ctx, endTimeout)
	defer cancel()
	offsets, err := kadm.NewClient(e.cl).FetchOffsets(kadm.RequireStable(fetchCtx), e.cfg.Group)
	if err == nil {
		err = offsets.Error()
	}
	if err != nil {
		return err
	}
	if _, now := e.cl.GroupMetadata(); now != gen {
		return fmt.Errorf("the group rebalanced (generation %d to %d)", gen, now)
	}
	set := map[string]map[int32]kgo.EpochOffset{e.cfg.Topic: {}}
	offsets.Each(func(o kadm.OffsetResponse) {
		if o.Topic == e.cfg.Topic && o.At >= 0 {
			set[o.Topic][o.Partition] = kgo.EpochOffset{Epoch: o.LeaderEpoch, Offset: o.At}
		}
	})
	e.cl.SetOffsets(set)
	e.cfg.Logger.Info("consumer set to the group's committed offsets after an unconfirmed transaction end", "topic", e.cfg.Topic, "offsets", set[e.cfg.Topic])
	return nil
}

// process runs the handler on one record. Poison becomes its dead letter,
// and class says why; class is empty for a record processed normally.
func (e *Engine) process(ctx context.Context, in *kgo.Record) (out []*kgo.Record, class string, err error) {
	out, err = e.cfg.Handler(ctx, in)
	if err == nil {
		return out, "", nil
	}
	var p Poison
	if !errors.As(err, &p) {
		return nil, "", err
	}
	class = p.ErrorClass()
	// The key is the only business ID a record that cannot be read has.
	e.cfg.Logger.Warn("poison record to the dead letter queue",
		"topic", in.Topic, "partition", in.Partition, "offset", in.Offset, "key", string(in.Key),
		"error_class", class, "err", err)
	dl, err := e.cfg.DeadLetter(in, class, err)
	if err != nil {
		return nil, "", fmt.Errorf("build dead letter: %w", err)
	}
	return []*kgo.Record{dl}, class, nil
}

// end commits (or aborts) the transaction with the offsets consumed in it. In
// at-least-once mode it flushes, then commits offsets: a crash in between
// replays the batch, which is the duplicate this mode exists to show.
func (e *Engine) end(ctx context.Context, commit bool, firsts map[string]map[int32]kgo.EpochOffset) (bool, error) {
	if e.sess != nil {
		return e.sess.End(ctx, kgo.TransactionEndTry(commit))
	}
	if !commit {
		// Rewind to the batch's first records so they are read again.
		e.cl.SetOffsets(firsts)
		return false, nil
	}
	if err := e.cl.CommitUncommittedOffsets(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// rememberFirst keeps the offset of the first record of each partition in a
// batch: where an aborted at-least-once batch starts again.
func rememberFirst(firsts map[string]map[int32]kgo.EpochOffset, r *kgo.Record) {
	parts := firsts[r.Topic]
	if parts == nil {
		parts = make(map[int32]kgo.EpochOffset)
		firsts[r.Topic] = parts
	}
	if _, ok := parts[r.Partition]; !ok {
		parts[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
	}
}
