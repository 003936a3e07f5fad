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
	"github.com/blackfriday-kafka/shop/txn/sink"
)

// Delivery states of an email, as /emails shows them in its status.
const (
	Queued    = schemas.EmailQueued // committed on email-sent, not handed over yet
	Delivered = sink.Delivered      // the mail server answered 250 to the message
	Rejected  = sink.Rejected       // the mail server refused it for good; it is a dead letter
)

// Delivery is a record of the email-deliveries state topic, keyed by
// email_id, JSON: what became of one email, the sink's outcome record
// (sink.Outcome) with the email's Message-ID. The delivery loop writes it
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

// Deliveries is what became of every committed email, for /emails: the
// sink's fold of email-sent and email-deliveries (sink.Outcomes), with the
// newest keep emails and their states.
type Deliveries struct {
	codec    *schemas.Codec[schemas.EmailSent]
	log      *slog.Logger
	keep     int
	outcomes *sink.Outcomes // which emails wait, and what became of the others

	mu    sync.RWMutex
	ring  []*Email // the newest keep emails
	next  int
	count int
	byID  map[string]*Email // the emails in ring
}

// NewDeliveries folds emails decoded with codec, keeping the newest keep
// (0 keeps counts only).
func NewDeliveries(codec *schemas.Codec[schemas.EmailSent], keep int, log *slog.Logger) *Deliveries {
	d := &Deliveries{codec: codec, log: log, keep: keep, outcomes: sink.NewOutcomes(log)}
	d.reset()
	return d
}

// reset empties the ring; d.mu is held.
func (d *Deliveries) reset() {
	d.ring, d.next, d.count = make([]*Email, 0, d.keep), 0, 0
	d.byID = make(map[string]*Email)
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
		d.delivery(r)
	}
	return nil
}

// AddEmail is Apply for a record of email-sent at partition and offset,
// already decoded.
func (d *Deliveries) AddEmail(partition int32, offset int64, e *schemas.EmailSent) {
	v := &Email{EmailSent: *e, MessageID: MessageID(e.EmailID)}
	if out, ok := d.outcomes.Record(partition, offset, e.EmailID, e.Status == Queued, e.SentAt); ok {
		resolve(v, out)
	}
	if d.keep == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
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

// delivery folds a record of email-deliveries: the email it settles, if
// /emails shows it, takes its state.
func (d *Deliveries) delivery(r *kgo.Record) {
	out, settled := d.outcomes.Read(r)
	if !settled {
		return // early, a resend's, or no delivery record
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if v := d.byID[out.ID]; v != nil {
		resolve(v, out)
	}
}

// resolve gives v the state of out.
func resolve(v *Email, out sink.Outcome) {
	at := out.At
	v.Status, v.DeliveredAt, v.Reply = out.State, &at, out.Reply
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
func (d *Deliveries) Undelivered() sink.Undelivered { return d.outcomes.Undelivered() }

// Pending counts the committed emails not delivered or refused yet: what
// Undelivered counts, without looking for the oldest.
func (d *Deliveries) Pending() int { return d.outcomes.Pending() }

// deliveriesVersion changes whenever the snapshot does: a checkpoint of
// another version is not restored (the view reads the log from the start).
const deliveriesVersion = 1

type deliveriesSnapshot struct {
	Version int
	Count   int
	Emails  []Email // the ring, oldest first
	Pending map[string]sink.Waiting
	Early   map[string]sink.Outcome
	Pos     map[int32]int64
	Done    map[string]int64
}

// Snapshot encodes the fold for a checkpoint.
func (d *Deliveries) Snapshot() ([]byte, error) {
	count, newest := d.Newest(d.keep)
	st := d.outcomes.State()
	snap := deliveriesSnapshot{Version: deliveriesVersion, Count: count, Emails: make([]Email, 0, len(newest)),
		Pending: st.Pending, Early: st.Early, Pos: st.Pos, Done: st.Done}
	for i := len(newest) - 1; i >= 0; i-- {
		snap.Emails = append(snap.Emails, newest[i])
	}
	var buf bytes.Buffer
	err := gob.NewEncoder(&buf).Encode(snap)
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
	d.outcomes.SetState(sink.OutcomesState{Pending: snap.Pending, Early: snap.Early, Pos: snap.Pos, Done: snap.Done})
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
	return nil
}
