// Package progress is how the operators' tools say how a long run is
// going: a line every so often while it runs.
package progress

import (
	"sync"
	"time"
)

// Every calls report every interval, from a goroutine of its own, until
// stop is called; stop reports a last time, so that a run shorter than an
// interval still says how it went, and returns once report is no longer
// running. An interval of zero or less never reports.
func Every(interval time.Duration, report func()) (stop func()) {
	if interval <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				report()
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		report()
	}
}
