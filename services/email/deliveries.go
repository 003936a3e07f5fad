package email

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

	"github.com/blackfriday-kafka/shop/schemas"
)

// Delivery states of an email, as /emails shows them in its status.
const (
	Queued    = schemas.EmailQueued // committed on email-sent, not handed over yet
	Delivered = "delivered"         // the mail server answered 250 to the message
	Rejected  = "rejected"          // the mail server refused it for good; it is a dead letter
)

// Delivery is a record of the email-deliveries state topic, keyed by
// email_id, JSON: what became of one email. The delivery loop writes it
// once the mail server answered, before it commits the email's offset; a
// resend writes it again, the same but for At.
type Delivery struct {
	EmailID   string    `json:"email_id"`
	State     string    `json:"state"`     // delivered or rejected
	Partition int32     `json:"partition"` // where the email is on email-sent
	Offset    int64     `json:"offset"`
	MessageID string    `json:"message_id"`
	At        time.Time `json:"at"`
	Reply     string    `json:"reply,omitempty"` // the server's, for rejected
}

// Record is d as a record of email-deliveries, keyed by its email.
func (d Delivery) Record() (*kgo.Record, error) {
	value, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: schemas.EmailDeliveries.Name, Key: []byte(d.EmailID), Value: value}, nil
}

// Email is an email as /emails shows it: the committed record, with its
// delivery state in Status.
type Email struct {
	schemas.EmailSent
	MessageID   string     `json:"message_id"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"` // when the server answered, delivered or rejected
	Reply       string     `json:"smtp_reply,omitempty"`   // the server's refusal
}

// Undelivered is how many committed emails the mail server has not taken
// or refused yet, and since when the oldest of them waits.
type Undelivered struct {
	Count     int        `json:"undelivered"`
	Oldest    *time.Time `json:"oldest_undelivered_at"` // its sent_at, the commit of its transaction
	Delivered int64      `json:"delivered"`
	Rejected  int64      `json:"rejected"`
}

// Deliveries is what became of every committed email: the fold of
// email-sent and email-deliveries, both read with read_committed by one
// view.Follower, so that it never counts an email of an aborted
// transaction. It knows which emails are still queued (an email read
// without its delivery) and keeps the newest keep emails with their state
// for /emails. A delivery can be read before its email (the two topics are
// read side by side): it waits until the email comes; one for an email read
// before is a resend's, and changes nothing.
type Deliveries struct {
	codec *schemas.Codec[schemas.EmailSent]
	log   *slog.Logger
	keep  int

	mu      sync.RWMutex
	ring    []*Email // the newest keep emails
	next    int
	count   int
	byID    map[string]*Email   // the emails in ring
	pending map[string]queued   // email_id -> where the queued email is
	early   map[string]Delivery // deliveries read before their email
	pos     map[int32]int64     // next offset to read of each partition of email-sent
	done    map[string]int64    // emails delivered and rejected, by state
	folded  int                 // emails read, for pruning early
}

type queued struct {
	Partition int32
	Offset    int64
	Since     time.Time
}

// NewDeliveries folds emails decoded with codec, keeping the newest keep
// (0 keeps counts only, as analytics does).
func NewDeliveries(codec *schemas.Codec[schemas.EmailSent], keep int, log *slog.Logger) *Deliveries {
	d := &Deliveries{codec: codec, log: log, keep: keep}
	d.reset()
	return d
}

func (d *Deliveries) reset() {
	d.ring, d.next, d.count = make([]*Email, 0, d.keep), 0, 0
	d.byID = make(map[string]*Email)
	d.pending, d.early = make(map[string]queued), make(map[string]Delivery)
	d.pos, d.done = make(map[int32]int64), make(map[string]int64)
	d.folded = 0
}

// Topics are what Deliveries folds: the apply of a view.Follower of them.
func (d *Deliveries) Topics() []string {
	return []string{schemas.Emails.Name, schemas.EmailDeliveries.Name}
}

// Apply folds one committed record of either topic. An email that can
// never be read is a *schemas.RecordError, which the follower skips; a
// delivery record that is not JSON is skipped here.
func (d *Deliveries) Apply(ctx context.Context, r *kgo.Record) error {
	switch r.Topic {
	case schemas.Emails.Name:
		e, err := d.codec.Decode(ctx, r.Value)
		if err != nil {
			return err
		}
		d.AddEmail(r.Partition, r.Offset, e)
	case schemas.EmailDeliveries.Name:
		var del Delivery
		if err := json.Unmarshal(r.Value, &del); err != nil || del.EmailID == "" {
			d.log.Warn("skipping a delivery record that does not parse", "topic", r.Topic, "partition", r.Partition,
				"offset", r.Offset, "key", string(r.Key), "err", err)
			return nil
		}
		d.delivery(del)
	}
	return nil
}

// AddEmail is Apply for a record of email-sent at partition and offset,
// already decoded.
func (d *Deliveries) AddEmail(partition int32, offset int64, e *schemas.EmailSent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pos[partition] = offset + 1
	v := &Email{EmailSent: *e, MessageID: MessageID(e.EmailID)}
	if e.Status == Queued {
		if del, ok := d.early[e.EmailID]; ok {
			delete(d.early, e.EmailID)
			d.resolve(v, del)
		} else {
			d.pending[e.EmailID] = queued{Partition: partition, Offset: offset, Since: e.SentAt}
		}
	}
	if d.keep > 0 {
		d.count++
		if len(d.ring) < d.keep {
			d.ring = append(d.ring, v)
		} else {
			if old := d.ring[d.next]; d.byID[old.EmailID] == old {
				delete(d.byID, old.EmailID)
			}
			d.ring[d.next] = v
			d.next = (d.next + 1) % d.keep
		}
		d.byID[e.EmailID] = v
	}
	if d.folded++; d.folded%1024 == 0 {
		// A delivery of an email at an offset already read will never
		// meet its email (a topic of an older run, say): forget it.
		for id, del := range d.early {
			if del.Offset < d.pos[del.Partition] {
				delete(d.early, id)
			}
		}
	}
}

func (d *Deliveries) delivery(del Delivery) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.pending[del.EmailID]; ok {
		delete(d.pending, del.EmailID)
		v := d.byID[del.EmailID]
		if v == nil {
			v = &Email{}
		}
		d.resolve(v, del)
		return
	}
	if del.Offset >= d.pos[del.Partition] {
		d.early[del.EmailID] = del // its email is not read yet
	}
	// Otherwise a resend's: the email has its state already.
}

// resolve gives v the state of del and counts it; d.mu is held.
func (d *Deliveries) resolve(v *Email, del Delivery) {
	at := del.At
	v.Status, v.DeliveredAt, v.Reply = del.State, &at, del.Reply
	d.done[del.State]++
}

// Newest returns how many emails were read and up to limit of the newest,
// newest first.
func (d *Deliveries) Newest(limit int) (int, []Email) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	n := min(limit, len(d.ring))
	out := make([]Email, 0, n)
	for i := range n {
		idx := (d.next - 1 - i + 2*len(d.ring)) % len(d.ring)
		out = append(out, *d.ring[idx])
	}
	return d.count, out
}

// Undelivered is the queue the mail server has not answered for yet.
func (d *Deliveries) Undelivered() Undelivered {
	d.mu.RLock()
	defer d.mu.RUnlock()
	u := Undelivered{Count: len(d.pending), Delivered: d.done[Delivered], Rejected: d.done[Rejected]}
	for _, q := range d.pending {
		if u.Oldest == nil || q.Since.Before(*u.Oldest) {
			since := q.Since
			u.Oldest = &since
		}
	}
	return u
}

// Pending counts the committed emails not delivered or refused yet: what
// Undelivered counts, without looking for the oldest.
func (d *Deliveries) Pending() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.pending)
}

// deliveriesVersion changes whenever the snapshot does: a checkpoint of
// another version is not restored (the view reads the log from the start).
const deliveriesVersion = 1

type deliveriesSnapshot struct {
	Version int
	Count   int
	Emails  []Email // the ring, oldest first
	Pending map[string]queued
	Early   map[string]Delivery
	Pos     map[int32]int64
	Done    map[string]int64
}

// Snapshot encodes the fold for a checkpoint.
func (d *Deliveries) Snapshot() ([]byte, error) {
	count, newest := d.Newest(d.keep)
	d.mu.RLock()
	snap := deliveriesSnapshot{Version: deliveriesVersion, Count: count, Emails: make([]Email, 0, len(newest)),
		Pending: d.pending, Early: d.early, Pos: d.pos, Done: d.done}
	for i := len(newest) - 1; i >= 0; i-- {
		snap.Emails = append(snap.Emails, newest[i])
	}
	var buf bytes.Buffer
	err := gob.NewEncoder(&buf).Encode(snap)
	d.mu.RUnlock()
	return buf.Bytes(), err
}

// Restore replaces the fold with a checkpoint's.
func (d *Deliveries) Restore(b []byte) error {
	var snap deliveriesSnapshot
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&snap); err != nil {
		return err
	}
	if snap.Version != deliveriesVersion {
		return errors.New("checkpoint of another version of the email view")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reset()
	for i := range snap.Emails {
		v := snap.Emails[i]
		if d.keep == 0 {
			break
		}
		if len(d.ring) < d.keep {
			d.ring = append(d.ring, &v)
		} else {
			d.ring[d.next] = &v
			d.next = (d.next + 1) % d.keep
		}
		d.byID[v.EmailID] = &v
	}
	d.count = snap.Count
	if snap.Pending != nil {
		d.pending = snap.Pending
	}
	if snap.Early != nil {
		d.early = snap.Early
	}
	if snap.Pos != nil {
		d.pos = snap.Pos
	}
	if snap.Done != nil {
		d.done = snap.Done
	}
	return nil
}
