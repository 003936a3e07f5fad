// Package loop is how the runtime's long-running parts go round: a call
// retried with a doubling backoff until it succeeds (Retry), and work done
// at a fixed interval until shutdown (Every).
package loop

import (
	"context"
	"log/slog"
	"time"
)

// Retry runs fn until it succeeds or ctx ends, waiting from first, doubling
// up to most, between tries, and logging each failure at warn as msg with
// attrs, the backoff and the error. It reports whether fn succeeded.
func Retry(ctx context.Context, log *slog.Logger, msg string, first, most time.Duration, fn func() error, attrs ...any) bool {
	for backoff := first; ; backoff = min(2*backoff, most) {
		err := fn()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		log.Warn(msg, append(attrs, "backoff", backoff, "err", err)...)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
	}
}

// Every calls do with the time of each tick, every interval, until ctx
// ends; then it returns nil, so that it can run in an errgroup beside the
// work it tends.
func Every(ctx context.Context, interval time.Duration, do func(now time.Time)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			do(now)
		}
	}
}
