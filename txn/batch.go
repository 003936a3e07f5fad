package txn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn/kafkaclient"
	"github.com/blackfriday-kafka/shop/txn/loop"
)

// pollChunk is how many records the loop takes from the client at a time.
// Every record polled must be processed before the transaction ends (its
// offset commits with it), so small chunks keep a transaction close to
// MaxInterval even when each record is slow; the rest waits in the client.
const pollChunk = 16

// idleWait is how long a transaction waits for more records than the
// client holds: a poll with no wait at all would return nothing (a done
// context ends a poll before it looks at what is buffered).
const idleWait = time.Millisecond

// Run consumes until ctx is cancelled, then ends the transaction in hand
// (committing what was fully processed), leaves the group and returns nil.
// It returns an error only when the engine cannot go on, for example
// ErrFenced when a newer instance took over its transactional ID.
func (e *Engine) Run(ctx context.Context) (err error) {
	// A fenced instance must not leave the group: its instance ID now
	// belongs to the newer instance, which leaving would take out.
	defer func() { e.close(!errors.Is(err, ErrFenced)) }()
	return e.poll.Run(ctx)
}

// step is a transaction of the records of a poll, and of what comes in
// the meantime; a transaction that did not commit asks for a backoff
// before its records are read again.
func (e *Engine) step(ctx context.Context, records []*kgo.Record) (retry bool, err error) {
	committed, err := e.batch(ctx, records)
	return !committed, err
}

func (e *Engine) close(leave bool) {
	e.c.close()
	if leave && e.cfg.InstanceID != "" {
		kafkaclient.LeaveGroup(e.cfg.Brokers, e.cfg.Connect, e.cfg.Group, e.cfg.InstanceID, e.cfg.Logger)
	}
}

// batch runs one transaction: it processes the records in hand, keeps
// polling until the batch is full or MaxInterval has passed, then commits.
// It reports whether the transaction committed.
func (e *Engine) batch(ctx context.Context, records []*kgo.Record) (bool, error) {
	start := time.Now()
	cl := e.Client()
	if err := e.c.begin(); err != nil {
		if fenced(err) {
			return false, fmt.Errorf("%w: %v", ErrFenced, err)
		}
		return false, fmt.Errorf("txn: begin: %w", err)
	}
	var (
		produced = new(promises)
		outputs  []*kgo.Record
		n        int
		failed   error
		culprit  *kgo.Record // the input the failure belongs to, if known
		// fencedNow is set when the group fenced this instance
		// mid-batch: the batch aborts and Run stops.
		fencedNow error
	)
	deadline := start.Add(e.cfg.MaxInterval)
	for {
		for _, in := range records {
			hctx := ctx
			if refusal, ok := e.refused[at(in)]; ok {
				hctx = withRefusal(ctx, refusal)
			}
			out, err := e.cfg.Handler(hctx, in)
			if err != nil {
				failed, culprit = err, in
				break
			}
			for _, r := range out {
				// Outputs of processed records must not fail
				// because shutdown began: they commit or abort
				// with the batch.
				cl.Produce(context.WithoutCancel(ctx), r, produced.promise(in))
			}
			outputs = append(outputs, out...)
			n++
		}
		if failed != nil || n >= e.cfg.MaxRecords || ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
		// Only what the client holds already: with nothing more
		// waiting, the transaction ends now, one commit round trip
		// after its records came. Under load the client buffers
		// more while a transaction runs and commits, so the next
		// one grows by itself, as a group commit does.
		wait := time.Now().Add(idleWait)
		if deadline.Before(wait) {
			wait = deadline
		}
		pollCtx, cancel := context.WithDeadline(ctx, wait)
		fetches := cl.PollRecords(pollCtx, min(pollChunk, e.cfg.MaxRecords-n))
		cancel()
		if fetches.IsClientClosed() {
			break
		}
		if err := kafkaclient.CheckFetches(fetches, e.cfg.Logger); err != nil {
			failed, fencedNow = err, err
			break
		}
		if records = fetches.Records(); len(records) == 0 {
			break
		}
	}

	if failed == nil {
		// Every record of the batch is in hand: send what the producer
		// still holds back for its linger (10ms by default) now, rather
		// than wait it out, which left the engine idle for most of each
		// transaction. Flush fails only with its context.
		_ = cl.Flush(context.WithoutCancel(ctx))
		culprit, failed = produced.wait()
		if failed != nil && permanent(failed) {
			e.refuse(culprit, failed)
		}
		if outdated(failed) && !e.outlived(start) {
			// Our producer epoch is old, and not because the coordinator
			// timed our transaction out: a newer instance with our
			// transactional ID took it. Aborting would initialise the
			// producer again and fence that instance in turn.
			e.aborted.Add(1)
			if e.cfg.OnBatch != nil {
				e.cfg.OnBatch(Batch{Records: n, Outputs: outputs, Took: time.Since(start), Err: failed})
			}
			return false, fmt.Errorf("%w: %v", ErrFenced, failed)
		}
	}
	if failed != nil && ctx.Err() == nil {
		e.cfg.Logger.Warn("batch failed", "topic", e.cfg.Topic, "records", n, "err", failed)
	}
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.EndTimeout)
	defer cancel()
	committed, err := e.c.end(endCtx, failed == nil)
	if e.cfg.OnBatch != nil {
		e.cfg.OnBatch(Batch{Records: n, Outputs: outputs, Committed: committed, Took: time.Since(start), Err: errors.Join(failed, err)})
	}
	if fencedNow != nil {
		return false, fencedNow
	}
	if err != nil && !fenced(err) {
		e.retriedEnds.Add(1)
		e.cfg.Logger.Warn("ending transaction failed; aborting it and reading from the group's committed offsets", "topic", e.cfg.Topic, "err", err)
		if err = e.c.recover(ctx); err == nil {
			e.restoreHeld(ctx)
		} else if !fenced(err) {
			return false, err
		}
	}
	if err != nil && fenced(err) {
		if !outdated(err) || !e.outlived(start) || !e.stillMember(ctx) {
			return false, fmt.Errorf("%w: %v", ErrFenced, err)
		}
		if err := e.renew(ctx, time.Since(start), err); err != nil {
			return false, err
		}
	}
	if !committed {
		e.aborted.Add(1)
		if culprit == nil && len(records) > 0 {
			culprit = records[0]
		}
		e.failed(culprit, errors.Join(failed, err))
		return false, nil
	}
	e.committed.Add(1)
	e.records.Add(int64(n))
	e.produced.Add(int64(len(outputs)))
	e.progressed()
	return true, nil
}

// refuse remembers that Kafka refused the outputs of in for good. If it had
// refused them before, the handler was told and returned the same again:
// nothing but a change of code or of the cluster can help, and the stall
// says so.
func (e *Engine) refuse(in *kgo.Record, err error) {
	if in == nil {
		return
	}
	if _, again := e.refused[at(in)]; again {
		e.cfg.Logger.Error("Kafka refused the outputs of a record again, after the handler was told",
			"topic", in.Topic, "partition", in.Partition, "offset", in.Offset, "err", err)
	}
	e.refused[at(in)] = err
}

// failed notes a transaction that did not commit, on the record it failed
// on, and logs once a minute while the stage stalls.
func (e *Engine) failed(on *kgo.Record, err error) {
	if on == nil {
		e.failures.Fail(-1, -1, err)
		return
	}
	e.failures.Fail(on.Partition, on.Offset, err)
}

// progressed notes a commit: whatever failed before is behind.
func (e *Engine) progressed() {
	clear(e.refused)
	e.failures.Progress()
}

// outlived reports whether a transaction begun at start has lasted long
// enough for its coordinator to abort it, which bumps the producer epoch:
// only then is an outdated epoch not the mark of a newer instance.
func (e *Engine) outlived(start time.Time) bool {
	return time.Since(start) >= e.cfg.TransactionTimeout
}

// stillMember reports whether the group still has this instance's static
// member as the member this client joined as. A newer instance with the
// same transactional ID has the same instance ID, and joining took the
// member over; after a timed-out transaction nobody did. Without an
// instance ID, or without an answer, the engine cannot tell, and stops as
// fenced.
func (e *Engine) stillMember(ctx context.Context) bool {
	if e.cfg.InstanceID == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.EndTimeout)
	defer cancel()
	var (
		ours  bool
		owner string
	)
	asked := loop.Retry(ctx, e.cfg.Logger, "asking the group who holds this instance failed, retrying", e.cfg.MinBackoff, e.cfg.MaxBackoff, func() error {
		described, err := kadm.NewClient(e.Client()).DescribeGroups(ctx, e.cfg.Group)
		if err == nil {
			err = described.Error()
		}
		if err != nil {
			return err
		}
		member, _ := e.Client().GroupMetadata()
		owner = ""
		for _, m := range described[e.cfg.Group].Members {
			if m.InstanceID != nil && *m.InstanceID == e.cfg.InstanceID {
				owner = m.MemberID
			}
		}
		ours = owner != "" && owner == member
		return nil
	}, "topic", e.cfg.Topic)
	if asked && !ours {
		e.cfg.Logger.Warn("the group gave this instance to another member: a newer instance took over", "topic", e.cfg.Topic,
			"instance", e.cfg.InstanceID, "member", owner)
	}
	return asked && ours
}

// renew replaces the client after the coordinator aborted a transaction
// that outlived TransactionTimeout, as when a coordinator's broker dies and
// its successor takes over after the timeout. Kafka then refuses the old
// epoch with PRODUCER_FENCED, as it would for a newer instance, and a
// fenced client cannot go on. The new client initialises a new producer
// for the same transactional ID and joins the group as the same static
// member (closing the old one does not leave the group, but revokes its
// partitions), reading from the offsets the group committed; the
// partitions' state is restored as at any assignment.
func (e *Engine) renew(ctx context.Context, took time.Duration, cause error) error {
	e.renewals.Add(1)
	e.cfg.Logger.Warn("the coordinator aborted a transaction that outlived its timeout; starting a new producer and reading from the group's committed offsets",
		"topic", e.cfg.Topic, "took", took.Round(time.Millisecond), "timeout", e.cfg.TransactionTimeout, "err", cause)
	e.c.close() // revokes its partitions (OnRevoked) before it returns
	return e.connect()
}

// outdated reports whether a partition leader refused a produce for its
// producer epoch: a newer instance took the transactional ID, or the
// coordinator aborted a transaction that outlived its timeout.
func outdated(err error) bool {
	return errors.Is(err, kerr.InvalidProducerEpoch) || errors.Is(err, kerr.ProducerFenced)
}

// fenced reports whether a newer instance took over this one's
// transactional ID, or its instance ID in the group.
func fenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.FencedInstanceID) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}
