package txn

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn/kafkaclient"
	"github.com/blackfriday-kafka/shop/txn/loop"
)

// committer is how a batch begins and ends: in a Kafka transaction, or
// (the control) by committing offsets after the outputs were written.
type committer interface {
	begin() error
	// end commits or aborts the batch and reports whether it committed.
	end(ctx context.Context, commit bool) (bool, error)
	// recover follows an end that failed: afterwards the client can
	// begin again, reading from the offsets the group really committed.
	recover(ctx context.Context) error
	close()
}

// transactional ends a batch with its Kafka transaction.
type transactional struct {
	e    *Engine
	sess *kgo.GroupTransactSession
}

func newTransactional(e *Engine, opts []kgo.Opt) (committer, *kgo.Client, error) {
	opts = append(opts,
		kgo.TransactionalID(e.cfg.TransactionalID),
		kgo.TransactionTimeout(e.cfg.TransactionTimeout),
		kgo.RequireStableFetchOffsets(),
		kafkaclient.Transactions(),
	)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, nil, err
	}
	return &transactional{e: e, sess: sess}, sess.Client(), nil
}

func (t *transactional) begin() error { return t.sess.Begin() }

func (t *transactional) end(ctx context.Context, commit bool) (bool, error) {
	return t.sess.End(ctx, kgo.TransactionEndTry(commit))
}

func (t *transactional) close() { t.sess.Close() }

// recover follows a transaction whose end failed, for example because its
// coordinator died and the commit was sent but not answered in time. The
// client then still holds the transaction (a new Begin would fail), and the
// commit may or may not have happened. recover aborts it, retrying until
// the cluster answers (the abort bumps the producer epoch, which settles an
// unconfirmed commit either way), then moves the consumer to the offsets
// the group really committed: the client only remembers the offsets of its
// last confirmed commit, and reading again from there would process a
// second time what the unconfirmed commit did commit.
func (t *transactional) recover(ctx context.Context) error {
	cfg := t.e.cfg
	err := retry(ctx, cfg, "aborting the unfinished transaction", func() error {
		endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.EndTimeout)
		defer cancel()
		_, err := t.sess.End(endCtx, kgo.TryAbort)
		if fenced(err) {
			return stop{err}
		}
		return err
	})
	if err != nil {
		return err
	}
	return retry(ctx, cfg, "reading the group's committed offsets", func() error { return rewind(ctx, cfg, t.sess.Client()) })
}

// atLeastOnce marks a batch's offsets once its outputs are written, and the
// client commits what is marked every autoCommitEvery, as a consumer with
// auto-commit does (Kafka's default: every 5 s): a crash replays what was
// processed since the last commit, which is the duplicate this mode exists
// to show.
type atLeastOnce struct {
	e  *Engine
	cl *kgo.Client
}

// autoCommitEvery is the at-least-once control's commit interval.
const autoCommitEvery = 100 * time.Millisecond

func newAtLeastOnce(e *Engine, opts []kgo.Opt) (committer, *kgo.Client, error) {
	cl, err := kgo.NewClient(append(opts, kgo.AutoCommitMarks(), kgo.AutoCommitInterval(autoCommitEvery))...)
	if err != nil {
		return nil, nil, err
	}
	return &atLeastOnce{e: e, cl: cl}, cl, nil
}

func (a *atLeastOnce) begin() error { return nil }

func (a *atLeastOnce) end(ctx context.Context, commit bool) (bool, error) {
	if !commit {
		// Read the batch again from where the group stands.
		return false, a.recover(ctx)
	}
	a.cl.MarkCommitOffsets(a.cl.UncommittedOffsets())
	return true, nil
}

func (a *atLeastOnce) recover(ctx context.Context) error {
	return retry(ctx, a.e.cfg, "reading the group's committed offsets", func() error { return rewind(ctx, a.e.cfg, a.cl) })
}

// close commits what was processed since the last commit: a graceful stop
// replays nothing.
func (a *atLeastOnce) close() {
	ctx, cancel := context.WithTimeout(context.Background(), a.e.cfg.EndTimeout)
	defer cancel()
	if err := a.cl.CommitMarkedOffsets(ctx); err != nil {
		a.e.cfg.Logger.Warn("committing the last offsets at shutdown failed", "topic", a.e.cfg.Topic, "err", err)
	}
	a.cl.Close()
}

// stop ends a retry with its error.
type stop struct{ error }

// retry runs fn until it succeeds, returns a stop, or ctx ends (which is no
// failure: shutting down, the broker aborts what is left at the transaction
// timeout, and the next owner of the partitions reads the committed
// offsets).
func retry(ctx context.Context, cfg Config, what string, fn func() error) error {
	var stopped error
	loop.Retry(ctx, cfg.Logger, what+" failed, retrying", cfg.MinBackoff, cfg.MaxBackoff, func() error {
		err := fn()
		if s, ok := err.(stop); ok {
			stopped = s.error
			return nil
		}
		return err
	}, "topic", cfg.Topic)
	return stopped
}

// rewind sets the consumer to the offsets the group committed, as the
// broker has them once no transaction is pending on them. A rebalance in
// the meantime fetches them anew, so rewind starts over if the group
// generation changed while it asked.
func rewind(ctx context.Context, cfg Config, cl *kgo.Client) error {
	_, gen := cl.GroupMetadata()
	fetchCtx, cancel := context.WithTimeout(ctx, cfg.EndTimeout)
	defer cancel()
	offsets, err := kadm.NewClient(cl).FetchOffsets(kadm.RequireStable(fetchCtx), cfg.Group)
	if err == nil {
		err = offsets.Error()
	}
	if err != nil {
		return err
	}
	if _, now := cl.GroupMetadata(); now != gen {
		return fmt.Errorf("the group rebalanced (generation %d to %d)", gen, now)
	}
	set := map[string]map[int32]kgo.EpochOffset{cfg.Topic: {}}
	offsets.Each(func(o kadm.OffsetResponse) {
		if o.Topic == cfg.Topic && o.At >= 0 {
			set[o.Topic][o.Partition] = kgo.EpochOffset{Epoch: o.LeaderEpoch, Offset: o.At}
		}
	})
	cl.SetOffsets(set)
	cfg.Logger.Info("consumer set to the group's committed offsets", "topic", cfg.Topic, "offsets", set[cfg.Topic])
	return nil
}
