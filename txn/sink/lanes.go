package sink

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// lane is one lane's part of a partition's records in a cycle.
type lane struct {
	recs  []*kgo.Record
	left  int64 // the first record it left; -1: none
	out   []*kgo.Record
	done  []int64 // the offsets whose effects ran
	retry bool
	crash bool
}

// runPartition runs p's effects, each key's in order on the lane it picks,
// the lanes side by side, then settles what the partition proved.
func (s *Sink) runPartition(ctx context.Context, p *partition, start time.Time) {
	lanes := make([]lane, len(p.lanes))
	for i := range lanes {
		lanes[i].left = -1
	}
	for _, r := range p.recs {
		l := &lanes[laneOf(r.Key, len(lanes))]
		l.recs = append(l.recs, r)
	}
	c := &cut{ctx: ctx, start: start, budget: s.cfg.Budget, at: math.MaxInt64, begun: -1}
	// The effects a lane began run also once shutdown began: the cut,
	// not the context, ends the cycle.
	dctx := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for i := range lanes {
		if len(lanes[i].recs) > 0 {
			wg.Go(func() { s.runLane(dctx, &lanes[i], p.lanes[i], p.ahead, c) })
		}
	}
	wg.Wait()
	p.settle(lanes)
}

// runLane runs l's effects on do, in order, until the cut stops it or an
// effect fails, which halts the partition's other lanes at their next.
func (s *Sink) runLane(ctx context.Context, l *lane, do Lane, ahead map[int64]bool, c *cut) {
	for _, r := range l.recs {
		if ahead[r.Offset] {
			continue // ran and recorded in an earlier cycle
		}
		if !c.proceed(r.Offset) {
			l.left = r.Offset
			return
		}
		out, err := do.Do(ctx, r)
		switch {
		case errors.Is(err, ErrKilled):
			l.crash = true
			c.halt()
			return
		case err != nil:
			s.failures.Fail(-1, -1, err)
			l.retry, l.left = true, r.Offset
			c.halt()
			return
		}
		l.out = append(l.out, out...)
		l.done = append(l.done, r.Offset)
	}
}

// cut decides which records the lanes of one partition begin. When the
// cycle's budget is spent or its context ends, it cuts the partition after
// the last record a lane began: the lanes behind catch up to it, so the
// partition is done up to the cut and a graceful stop runs nothing twice.
// When an effect fails, every lane stops at its next record.
type cut struct {
	ctx    context.Context
	start  time.Time
	budget time.Duration

	mu     sync.Mutex
	halted bool
	at     int64 // the first offset beyond the cut; MaxInt64 until it is made
	begun  int64 // the highest offset a lane began
}

func (c *cut) proceed(off int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at == math.MaxInt64 && (c.ctx.Err() != nil || time.Since(c.start) > c.budget) {
		c.at = c.begun + 1
	}
	if c.halted || off >= c.at {
		return false
	}
	c.begun = max(c.begun, off)
	return true
}

func (c *cut) halt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.halted = true
}

// settle gathers what p's lanes did: the partition is done up to the first
// record a lane left, since each lane went in order and stopped only at the
// one it left; what other lanes did after it is remembered in p.ahead, so
// that the next cycle, which reads it again, does not run it again.
func (p *partition) settle(lanes []lane) {
	for _, l := range lanes {
		p.retry = p.retry || l.retry
		p.crash = p.crash || l.crash
		p.out = append(p.out, l.out...)
		if l.left >= 0 && (p.stop < 0 || l.left < p.stop) {
			p.stop = l.left
		}
	}
	if p.crash {
		return // the sink stops here, as SIGKILL would
	}
	for _, r := range p.recs {
		if p.stop >= 0 && r.Offset >= p.stop {
			break
		}
		p.next, p.epoch = r.Offset+1, r.LeaderEpoch
	}
	for off := range p.ahead {
		if p.next >= 0 && off < p.next {
			delete(p.ahead, off) // committed now
		}
	}
	if p.stop < 0 {
		return
	}
	for _, l := range lanes {
		for _, off := range l.done {
			if off > p.stop {
				p.ahead[off] = true
			}
		}
	}
}
