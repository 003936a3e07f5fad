package sink

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// partition is one partition's part of a cycle.
type partition struct {
	recs  []*kgo.Record
	next  int64 // after the last record whose effect is proven; -1: none
	epoch int32
	stop  int64 // the first record left for the next poll; -1: none
	out   []*kgo.Record
	retry bool // an effect failed: the next poll waits
	crash bool // a lane returned ErrKilled
	lanes []Lane
	ahead map[int64]bool // s.ahead's, for this partition
}

// cycle runs the effects of one poll, each partition on its own lanes,
// side by side, in order for each key, until one fails or the budget is
// spent; then it writes the records that say what came of them, commits
// the offsets they prove and rewinds each partition to its first record
// left. It reports whether an effect failed, so that the next poll waits.
func (s *Sink) cycle(ctx context.Context, recs []*kgo.Record) (retry bool, err error) {
	start := time.Now()
	parts := s.partitions(recs)
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() { s.runPartition(ctx, p, start) })
	}
	wg.Wait()
	for _, p := range parts {
		if p.crash {
			return false, ErrKilled // the sink stops here, as SIGKILL would
		}
		retry = retry || p.retry
	}

	// What the effects did is recorded, also at shutdown.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.write(wctx, parts); err != nil {
		// Nothing of this cycle is recorded: all of it runs again.
		s.log.Warn("delivery records not written; the effects of this poll will run again", "err", err)
		s.failures.Fail(-1, -1, err)
		s.rewind(parts, func(n int32, p *partition) int64 {
			delete(s.ahead, n) // not recorded either
			return p.recs[0].Offset
		})
		return true, nil
	}
	// Progress only once the records are written too: a sink whose
	// effects go through but cannot be recorded is failing, and says so
	// once it has failed for StallAfter.
	if !retry {
		s.failures.Progress()
	}
	s.commit(wctx, parts)
	s.rewind(parts, func(_ int32, p *partition) int64 { return p.stop })
	return retry, nil
}

// partitions splits a poll's records by partition, each with its lanes and
// its memory of what went ahead.
func (s *Sink) partitions(recs []*kgo.Record) map[int32]*partition {
	parts := make(map[int32]*partition)
	for _, r := range recs {
		p := parts[r.Partition]
		if p == nil {
			lanes := s.lanes[r.Partition]
			if lanes == nil {
				lanes = make([]Lane, s.cfg.Lanes)
				for i := range lanes {
					lanes[i] = s.cfg.NewLane()
				}
				s.lanes[r.Partition] = lanes
			}
			ahead := s.ahead[r.Partition]
			if ahead == nil {
				ahead = make(map[int64]bool)
				s.ahead[r.Partition] = ahead
			}
			p = &partition{next: -1, stop: -1, lanes: lanes, ahead: ahead}
			parts[r.Partition] = p
		}
		p.recs = append(p.recs, r)
	}
	return parts
}

// write writes the records the effects returned, and waits for them: a
// commit never runs ahead of what the outcome records show.
func (s *Sink) write(ctx context.Context, parts map[int32]*partition) error {
	var (
		mu   sync.Mutex
		errs error
	)
	for _, p := range parts {
		for _, o := range p.out {
			s.cl.Produce(ctx, o, func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					errs = errors.Join(errs, err)
					mu.Unlock()
				}
			})
		}
	}
	if err := s.cl.Flush(ctx); err != nil {
		errs = errors.Join(errs, err)
	}
	return errs
}

// rewind sets each partition's consumer to the offset at returns for it,
// where the next poll starts; -1 leaves it where it is.
func (s *Sink) rewind(parts map[int32]*partition, at func(int32, *partition) int64) {
	offsets := make(map[int32]kgo.EpochOffset)
	for n, p := range parts {
		if off := at(n, p); off >= 0 {
			offsets[n] = kgo.EpochOffset{Epoch: -1, Offset: off}
		}
	}
	if len(offsets) > 0 {
		s.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{s.cfg.Topic: offsets})
	}
}

// commit commits the offsets the effects proved. A commit that fails is
// logged: the next one covers the same records, and a crash before it runs
// their effects again.
func (s *Sink) commit(ctx context.Context, parts map[int32]*partition) {
	offsets := make(map[int32]kgo.EpochOffset)
	for n, p := range parts {
		if p.next >= 0 {
			offsets[n] = kgo.EpochOffset{Epoch: p.epoch, Offset: p.next}
		}
	}
	if len(offsets) == 0 {
		return
	}
	s.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{s.cfg.Topic: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err == nil {
				for _, t := range resp.Topics {
					for _, p := range t.Partitions {
						if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
							err = errors.Join(err, fmt.Errorf("partition %d: %w", p.Partition, perr))
						}
					}
				}
			}
			if err != nil && ctx.Err() == nil {
				s.log.Warn("committing delivered offsets failed; a crash now would run their effects again", "err", err)
			}
		})
}

// laneOf is the lane of the records with key: the same for all of them,
// so that one key's effects run in order.
func laneOf(key []byte, lanes int) int {
	h := fnv.New32a()
	_, _ = h.Write(key)
	return int(h.Sum32() % uint32(lanes))
}
