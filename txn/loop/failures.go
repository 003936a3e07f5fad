package loop

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Stall is work that has kept failing for longer than its bound: a stage
// retrying the same records, a sink whose side effect does not go through.
type Stall struct {
	Topic     string
	Partition int32     // where it fails; -1 when unknown
	Offset    int64     // the record it fails on; -1 when unknown
	Since     time.Time // the first failure
	Reason    string    // the latest failure
}

func (s Stall) String() string {
	return fmt.Sprintf("%s partition %d offset %d retried since %s: %s",
		s.Topic, s.Partition, s.Offset, s.Since.UTC().Format(time.RFC3339), s.Reason)
}

// stallLogEvery is how often a stall says so in the log.
const stallLogEvery = time.Minute

// Failures is since when a loop's work has kept failing, and what the log
// says of it. The engine and the sink each keep one.
type Failures struct {
	Topic string        // of the Stall
	After time.Duration // how long the work may fail before it is a stall
	Log   *slog.Logger
	Lines Lines
	Attrs []any // on each line

	mu      sync.Mutex
	failing Stall     // Since is zero while the work goes through
	logged  time.Time // the last line about it
}

// Lines are what the log says of failures: Begun at warn at the first
// failure (none if empty), Stalled at error once the failures have gone on
// for After and every minute after, and Ended at info when the work goes
// through again, if the log said something was wrong.
type Lines struct{ Begun, Stalled, Ended string }

// Fail notes a failure at partition and offset (-1 when unknown), for err.
func (f *Failures) Fail(partition int32, offset int64, err error) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	first := f.failing.Since.IsZero()
	if first {
		f.failing = Stall{Topic: f.Topic, Partition: -1, Offset: -1, Since: now}
	}
	if partition >= 0 {
		f.failing.Partition, f.failing.Offset = partition, offset
	}
	if err != nil {
		f.failing.Reason = err.Error()
	}
	switch {
	case first && f.Lines.Begun != "":
		f.logged = now
		f.Log.Warn(f.Lines.Begun, append(f.attrs(), "err", err)...)
	case now.Sub(f.failing.Since) >= f.After && now.Sub(f.logged) >= stallLogEvery:
		f.logged = now
		attrs := f.attrs()
		if f.failing.Partition >= 0 {
			attrs = append(attrs, "partition", f.failing.Partition, "offset", f.failing.Offset)
		}
		f.Log.Error(f.Lines.Stalled, append(attrs, "since", f.failing.Since, "err", f.failing.Reason)...)
	}
}

// Progress notes work that went through: whatever failed before is behind.
func (f *Failures) Progress() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if since := f.failing.Since; !since.IsZero() && (f.Lines.Begun != "" || time.Since(since) >= f.After) {
		f.Log.Info(f.Lines.Ended, append(f.attrs(), "failed_for", time.Since(since).Round(time.Millisecond))...)
	}
	f.failing = Stall{}
}

// Stalled reports the stall, once the work has failed for After.
func (f *Failures) Stalled() (Stall, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing.Since.IsZero() || time.Since(f.failing.Since) < f.After {
		return Stall{}, false
	}
	return f.failing, true
}

// Since is when the failures began; zero while the work goes through.
func (f *Failures) Since() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failing.Since
}

func (f *Failures) attrs() []any {
	attrs := make([]any, len(f.Attrs), len(f.Attrs)+8)
	copy(attrs, f.Attrs)
	return attrs
}
