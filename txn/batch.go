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

// transaction is one batch in the making: what it consumed and produced,
// and why it cannot commit, if it cannot.
type transaction struct {
	start    time.Time
	cl       *kgo.Client
	records  []*kgo.Record // the records in hand: the last ones polled
	produced promises
	outputs  []*kgo.Record
	n        int // input records processed
	failed   error
	culprit  *kgo.Record // the input the failure belongs to, if known
	// fencedNow is set when the group fenced this instance mid-batch:
	// the batch aborts and Run stops.
	fencedNow error
}

// batch runs one transaction: it processes the records in hand, keeps
// polling until the batch is full or MaxInterval has passed, then commits.
// It reports whether the transaction committed.
func (e *Engine) batch(ctx context.Context, records []*kgo.Record) (bool, error) {
	t := &transaction{start: time.Now(), cl: e.Client(), records: records}
	if err := e.begin(); err != nil {
		return false, err
	}
	e.fill(ctx, t)
	if t.failed == nil {
		if err := e.awaitOutputs(ctx, t); err != nil {
			return false, err
		}
	}
	committed, err := e.end(ctx, t)
	if t.fencedNow != nil {
		return false, t.fencedNow
	}
	reason, err := e.afterEnd(ctx, t, err)
	if err != nil {
		return false, err
	}
	if !committed {
		e.aborted.Add(1)
		if t.culprit == nil && len(t.records) > 0 {
			t.culprit = t.records[0]
		}
		e.failed(t.culprit, errors.Join(t.failed, reason))
		return false, nil
	}
	e.committed.Add(1)
	e.records.Add(int64(t.n))
	e.produced.Add(int64(len(t.outputs)))
	e.progressed()
	return true, nil
}

func (e *Engine) begin() error {
	if err := e.c.begin(); err != nil {
		if fenced(err) {
			return fmt.Errorf("%w: %v", ErrFenced, err)
		}
		return fmt.Errorf("txn: begin: %w", err)
	}
	return nil
}

// fill processes the records in hand and polls for more, until a record
// fails, the batch is full, MaxInterval has passed or nothing more waits
// in the client.
func (e *Engine) fill(ctx context.Context, t *transaction) {
	deadline := t.start.Add(e.cfg.MaxInterval)
	for e.handle(ctx, t) {
		if t.n >= e.cfg.MaxRecords || ctx.Err() != nil || !time.Now().Before(deadline) {
			return
		}
		records, ok := e.more(ctx, t, deadline)
		if !ok {
			return
		}
		if t.records = records; len(records) == 0 {
			return
		}
	}
}

// handle hands the records in hand to the handler and produces their
// outputs. It reports whether every one of them went through.
func (e *Engine) handle(ctx context.Context, t *transaction) bool {
	for _, in := range t.records {
		hctx := ctx
		if refusal, ok := e.refused[at(in)]; ok {
			hctx = withRefusal(ctx, refusal)
		}
		out, err := e.cfg.Handler(hctx, in)
		if err != nil {
			t.failed, t.culprit = err, in
			return false
		}
		for _, r := range out {
			// Outputs of processed records must not fail because
			// shutdown began: they commit or abort with the batch.
			t.cl.Produce(context.WithoutCancel(ctx), r, t.produced.promise(in))
		}
		t.outputs = append(t.outputs, out...)
		t.n++
	}
	return true
}

// more polls only what the client holds already: with nothing more
// waiting, the transaction ends now, one commit round trip after its
// records came. Under load the client buffers more while a transaction
// runs and commits, so the next one grows by itself, as a group commit
// does. It reports false when the client closed or the group fenced this
// instance.
func (e *Engine) more(ctx context.Context, t *transaction, deadline time.Time) ([]*kgo.Record, bool) {
	wait := time.Now().Add(idleWait)
	if deadline.Before(wait) {
		wait = deadline
	}
	pollCtx, cancel := context.WithDeadline(ctx, wait)
	defer cancel()
	fetches := t.cl.PollRecords(pollCtx, min(pollChunk, e.cfg.MaxRecords-t.n))
	if fetches.IsClientClosed() {
		return nil, false
	}
	if err := kafkaclient.CheckFetches(fetches, e.cfg.Logger); err != nil {
		t.failed, t.fencedNow = err, err
		return nil, false
	}
	return fetches.Records(), true
}

// awaitOutputs waits for every output of the batch. Every record of the
// batch is in hand: it sends what the producer still holds back for its
// linger (10ms by default) now, rather than wait it out, which left the
// engine idle for most of each transaction. It returns ErrFenced when a
// newer instance took the transactional ID.
func (e *Engine) awaitOutputs(ctx context.Context, t *transaction) error {
	_ = t.cl.Flush(context.WithoutCancel(ctx)) // it fails only with its context
	t.culprit, t.failed = t.produced.wait()
	if t.failed != nil && permanent(t.failed) {
		e.refuse(t.culprit, t.failed)
	}
	if outdated(t.failed) && !e.outlived(t.start) {
		// Our producer epoch is old, and not because the coordinator
		// timed our transaction out: a newer instance with our
		// transactional ID took it. Aborting would initialise the
		// producer again and fence that instance in turn.
		e.aborted.Add(1)
		e.onBatch(t, false, t.failed)
		return fmt.Errorf("%w: %v", ErrFenced, t.failed)
	}
	return nil
}

// end commits the transaction, or aborts it when something failed, and
// tells OnBatch.
func (e *Engine) end(ctx context.Context, t *transaction) (bool, error) {
	if t.failed != nil && ctx.Err() == nil {
		e.cfg.Logger.Warn("batch failed", "topic", e.cfg.Topic, "records", t.n, "err", t.failed)
	}
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.EndTimeout)
	defer cancel()
	committed, err := e.c.end(endCtx, t.failed == nil)
	e.onBatch(t, committed, errors.Join(t.failed, err))
	return committed, err
}

func (e *Engine) onBatch(t *transaction, committed bool, err error) {
	if e.cfg.OnBatch != nil {
		e.cfg.OnBatch(Batch{Records: t.n, Outputs: t.outputs, Committed: committed, Took: time.Since(t.start), Err: err})
	}
}

// afterEnd follows an end that failed. When nobody can say whether it
// committed, it aborts and reads again from the group's offsets; when the
// coordinator aborted a transaction that outlived its timeout, and the
// group still gives the instance to this member, it renews the client.
// It returns what is left of the failure, for the stall's reason, and an
// error when the engine cannot go on: fenced by a newer instance.
func (e *Engine) afterEnd(ctx context.Context, t *transaction, err error) (reason, stop error) {
	if err != nil && !fenced(err) {
		e.retriedEnds.Add(1)
		e.cfg.Logger.Warn("ending transaction failed; aborting it and reading from the group's committed offsets", "topic", e.cfg.Topic, "err", err)
		if err = e.c.recover(ctx); err == nil {
			e.restoreHeld(ctx)
		} else if !fenced(err) {
			return nil, err
		}
	}
	if err != nil && fenced(err) {
		if !outdated(err) || !e.outlived(t.start) || !e.stillMember(ctx) {
			return nil, fmt.Errorf("%w: %v", ErrFenced, err)
		}
		if err := e.renew(ctx, time.Since(t.start), err); err != nil {
			return nil, err
		}
	}
	return err, nil
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
