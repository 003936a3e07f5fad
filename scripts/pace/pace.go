// Package pace spreads the load of the operators' tools evenly over time:
// the i-th of n events over d is due at d*i/n from the start.
package pace

import (
	"context"
	"time"
)

// Wait waits until the i-th of n events spread evenly over d from start is
// due (at once if it is late), or ctx ends.
func Wait(ctx context.Context, start time.Time, i, n int, d time.Duration) error {
	wait := time.Until(start.Add(d * time.Duration(i) / time.Duration(n)))
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
