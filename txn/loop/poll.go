package loop

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn/kafkaclient"
)

// Poll is a consumer's loop, the one the engine and the sink both run: it
// pings the cluster, then polls, checks what the poll says, hands the
// records to Step, and waits a backoff after a step that asks to retry,
// doubling from MinBackoff to MaxBackoff and back to MinBackoff after a step
// that went through, until its context ends.
type Poll struct {
	Name   string             // who runs it, the prefix of its errors: txn, email delivery
	Client func() *kgo.Client // asked at each poll: the engine replaces its client
	Max    int                // the most records a poll takes
	Log    *slog.Logger

	MinBackoff, MaxBackoff time.Duration

	// Step handles the records of one poll and reports whether the next
	// poll waits a backoff first. An error ends the loop.
	Step func(ctx context.Context, records []*kgo.Record) (retry bool, err error)
	// Polled, if set, is called once each poll is handled, whatever came
	// of it: kgo.Client.AllowRebalance, for a client that blocks
	// rebalances while a poll's records are in hand.
	Polled func()
	// Retrying, if set, is told of each backoff before the loop waits it.
	Retrying func(backoff time.Duration)

	ready atomic.Bool
}

// Ready reports whether the loop has reached the cluster and runs.
func (p *Poll) Ready() bool { return p.ready.Load() }

// Run loops until ctx is cancelled, then returns nil; records polled and
// not handed to Step are not committed, so the next owner reads them
// again. It returns an error only when the loop cannot go on: the cluster
// did not answer the first ping, a poll says another member took this
// one's instance ID (kafkaclient.ErrFenced), or Step failed.
func (p *Poll) Run(ctx context.Context) error {
	if err := p.Client().Ping(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%s: cluster unreachable: %w", p.Name, err)
	}
	p.ready.Store(true)
	defer p.ready.Store(false)

	backoff := p.MinBackoff
	for ctx.Err() == nil {
		fetches := p.Client().PollRecords(ctx, p.Max)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			p.polled()
			return nil
		}
		retry, err := p.handle(ctx, fetches)
		if err != nil {
			return err
		}
		if !retry {
			backoff = p.MinBackoff
			continue
		}
		if p.Retrying != nil {
			p.Retrying(backoff)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, p.MaxBackoff)
	}
	return nil
}

func (p *Poll) handle(ctx context.Context, fetches kgo.Fetches) (bool, error) {
	defer p.polled()
	if err := kafkaclient.CheckFetches(fetches, p.Log); err != nil {
		return false, err
	}
	if fetches.NumRecords() == 0 {
		return false, nil
	}
	return p.Step(ctx, fetches.Records())
}

func (p *Poll) polled() {
	if p.Polled != nil {
		p.Polled()
	}
}
