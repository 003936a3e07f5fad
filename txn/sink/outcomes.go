package sink

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// What came of a record's effect, as its outcome record says.
const (
	Delivered = "delivered" // the effect went through: the mail server answered 250
	Rejected  = "rejected"  // refused for good: the record is a dead letter
)

// Outcome is what came of one record's effect. An effect says it in an
// outcome record, which Lane.Do returns: keyed by the record's ID, its
// value a JSON object with at least these fields (the email service's
// delivery records add the email's Message-ID).
type Outcome struct {
	ID        string    `json:"-"`         // the record's: the outcome record's key
	State     string    `json:"state"`     // Delivered or Rejected
	Partition int32     `json:"partition"` // where the record is on the sink's topic
	Offset    int64     `json:"offset"`
	At        time.Time `json:"at"`
	Reply     string    `json:"reply,omitempty"` // the refusal, for Rejected
}

// ParseOutcome reads an outcome record.
func ParseOutcome(r *kgo.Record) (Outcome, error) {
	var out Outcome
	if err := json.Unmarshal(r.Value, &out); err != nil {
		return out, err
	}
	if len(r.Key) == 0 {
		return out, errors.New("an outcome record without a key")
	}
	out.ID = string(r.Key)
	return out, nil
}

// Undelivered is how many records still wait for their effect, since when
// the oldest of them waits, and how many effects went which way.
type Undelivered struct {
	Count     int        `json:"undelivered"`
	Oldest    *time.Time `json:"oldest_undelivered_at"` // when it was committed
	Delivered int64      `json:"delivered"`
	Rejected  int64      `json:"rejected"`
}

// Waiting is a record that waits for its effect.
type Waiting struct {
	Partition int32
	Offset    int64
	Since     time.Time
}

// Outcomes is what came of the effects of a sink's records, read back from
// Kafka: the fold of the sink's topic and of its outcome records, both read
// with read_committed (by one view.Follower), so that it never counts a
// record of an aborted transaction. A record that waits for its effect is
// undelivered until its outcome is read. An outcome can be read before its
// record (the two topics are read side by side): it waits until the record
// comes; one for a record read before is a rerun's, and changes nothing.
type Outcomes struct {
	log *slog.Logger

	mu      sync.RWMutex
	pending map[string]Waiting // by ID
	early   map[string]Outcome // outcomes read before their record
	pos     map[int32]int64    // next offset to read of each partition of the topic
	done    map[string]int64   // outcomes by state
	folded  int                // records read, for pruning early
}

// NewOutcomes is an empty fold.
func NewOutcomes(log *slog.Logger) *Outcomes {
	o := &Outcomes{log: log}
	o.SetState(OutcomesState{})
	return o
}

// Record folds the record id of the sink's topic at partition and offset,
// which waits for its effect since since, or does not wait at all. It
// returns the outcome already read for it, if there is one.
func (o *Outcomes) Record(partition int32, offset int64, id string, waits bool, since time.Time) (Outcome, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pos[partition] = offset + 1
	out, early := o.early[id]
	switch {
	case !waits:
		early = false
	case early:
		delete(o.early, id)
		o.done[out.State]++
	default:
		o.pending[id] = Waiting{Partition: partition, Offset: offset, Since: since}
	}
	if o.folded++; o.folded%1024 == 0 {
		// An outcome of a record at an offset already read will never
		// meet its record (a topic of an older run, say): forget it.
		for id, e := range o.early {
			if e.Offset < o.pos[e.Partition] {
				delete(o.early, id)
			}
		}
	}
	return out, early
}

// Apply folds one outcome record, for a view.Follower of the outcome
// topic; one that does not parse is skipped, with a warning.
func (o *Outcomes) Apply(_ context.Context, r *kgo.Record) error {
	o.Read(r)
	return nil
}

// Read folds one outcome record, and returns it if it settled a record
// that waited.
func (o *Outcomes) Read(r *kgo.Record) (Outcome, bool) {
	out, err := ParseOutcome(r)
	if err != nil {
		o.log.Warn("skipping a delivery record that does not parse", "topic", r.Topic, "partition", r.Partition,
			"offset", r.Offset, "key", string(r.Key), "err", err)
		return out, false
	}
	return out, o.fold(out)
}

// fold folds an outcome. It reports whether it settled a record that
// waited; one read before its record waits for it.
func (o *Outcomes) fold(out Outcome) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.pending[out.ID]; ok {
		delete(o.pending, out.ID)
		o.done[out.State]++
		return true
	}
	if out.Offset >= o.pos[out.Partition] {
		o.early[out.ID] = out // its record is not read yet
	}
	// Otherwise a rerun's: the record has its outcome already.
	return false
}

// Undelivered is the queue of records whose effects have not come out yet.
func (o *Outcomes) Undelivered() Undelivered {
	o.mu.RLock()
	defer o.mu.RUnlock()
	u := Undelivered{Count: len(o.pending), Delivered: o.done[Delivered], Rejected: o.done[Rejected]}
	for _, w := range o.pending {
		if u.Oldest == nil || w.Since.Before(*u.Oldest) {
			since := w.Since
			u.Oldest = &since
		}
	}
	return u
}

// Pending counts the records that wait: what Undelivered counts, without
// looking for the oldest.
func (o *Outcomes) Pending() int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return len(o.pending)
}

// OutcomesState is the fold as a checkpoint keeps it.
type OutcomesState struct {
	Version int
	Pending map[string]Waiting
	Early   map[string]Outcome
	Pos     map[int32]int64
	Done    map[string]int64
}

// State is the fold, for a checkpoint. The maps are the fold's own: the
// caller encodes them before the next record is folded.
func (o *Outcomes) State() OutcomesState {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return OutcomesState{Version: outcomesVersion, Pending: o.pending, Early: o.early, Pos: o.pos, Done: o.done}
}

// outcomesVersion changes whenever OutcomesState does: a checkpoint of
// another version is not restored (the view reads the log from the start).
const outcomesVersion = 1

// SetState replaces the fold with a checkpoint's; nil maps start empty.
func (o *Outcomes) SetState(st OutcomesState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending, o.early, o.pos, o.done, o.folded = st.Pending, st.Early, st.Pos, st.Done, 0
	if o.pending == nil {
		o.pending = make(map[string]Waiting)
	}
	if o.early == nil {
		o.early = make(map[string]Outcome)
	}
	if o.pos == nil {
		o.pos = make(map[int32]int64)
	}
	if o.done == nil {
		o.done = make(map[string]int64)
	}
}

// Snapshot encodes the fold for a checkpoint (view.State).
func (o *Outcomes) Snapshot() ([]byte, error) {
	var buf bytes.Buffer
	o.mu.RLock()
	defer o.mu.RUnlock()
	err := gob.NewEncoder(&buf).Encode(OutcomesState{Version: outcomesVersion, Pending: o.pending, Early: o.early, Pos: o.pos, Done: o.done})
	return buf.Bytes(), err
}

// Restore replaces the fold with a checkpoint's (view.State).
func (o *Outcomes) Restore(b []byte) error {
	var st OutcomesState
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&st); err != nil {
		return err
	}
	if st.Version != outcomesVersion {
		return errors.New("checkpoint of another version of the outcomes")
	}
	o.SetState(st)
	return nil
}
