package sink_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn/sink"
)

// outcome is the outcome record of the record id at offset, as an effect
// writes it: keyed by id, JSON, with fields of its own beside the sink's.
func outcome(t *testing.T, id string, offset int64, state string) *kgo.Record {
	t.Helper()
	v, err := json.Marshal(map[string]any{"email_id": id, "state": state, "partition": 1, "offset": offset,
		"at": time.Now(), "message_id": id + "@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: "outcomes", Key: []byte(id), Value: v}
}

// The fold counts each record that waits until its outcome is read,
// whichever of the two comes first; a rerun's outcome changes nothing, a
// record that does not wait is never undelivered, an outcome record that
// does not parse is skipped, and a checkpoint gives the same fold back.
func TestOutcomesFold(t *testing.T) {
	ctx := context.Background()
	o := sink.NewOutcomes(slog.New(slog.NewTextHandler(t.Output(), nil)))
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	o.Record(1, 0, "old", false, at) // written before the outbox: no effect to wait for
	o.Record(1, 1, "a", true, at.Add(time.Second))
	for _, r := range []*kgo.Record{
		outcome(t, "b", 2, sink.Delivered), // before its record
		outcome(t, "a", 1, sink.Delivered),
		outcome(t, "a", 1, sink.Delivered), // a rerun's
		{Topic: "outcomes", Value: []byte("not json")},
	} {
		if err := o.Apply(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if out, settled := o.Record(1, 2, "b", true, at.Add(2*time.Second)); !settled || out.State != sink.Delivered {
		t.Fatalf("b's record meets its outcome read before it: %+v, %v", out, settled)
	}
	cWaits := at.Add(3 * time.Second)
	o.Record(1, 3, "c", true, cWaits)
	check := func(o *sink.Outcomes) {
		t.Helper()
		u := o.Undelivered()
		if u.Count != 1 || u.Delivered != 2 || u.Rejected != 0 || u.Oldest == nil || !u.Oldest.Equal(cWaits) || o.Pending() != 1 {
			t.Fatalf("undelivered = %+v, pending %d; want c alone waiting since %s, 2 delivered", u, o.Pending(), cWaits)
		}
	}
	check(o)
	snap, err := o.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored := sink.NewOutcomes(slog.New(slog.DiscardHandler))
	if err := restored.Restore(snap); err != nil {
		t.Fatal(err)
	}
	check(restored)
	if out, settled := restored.Read(outcome(t, "c", 3, sink.Rejected)); !settled || out.ID != "c" {
		t.Fatalf("c's rejection: %+v, settled %v", out, settled)
	}
	if u := restored.Undelivered(); u.Count != 0 || u.Rejected != 1 || u.Oldest != nil {
		t.Fatalf("after c's rejection: %+v", u)
	}
}
