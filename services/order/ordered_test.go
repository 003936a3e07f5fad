package order

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn/store"
)

// TestTail: where the memory of a partition reads order-created from at an
// assignment: the tail after what its store covers, or the window again
// when the store has nothing of it or does not match the topic.
func TestTail(t *testing.T) {
	topic, other := [16]byte{1}, [16]byte{2}
	b := bounds{topic: topic, start: 100, end: 900, stable: 880, window: 300}
	for _, tc := range []struct {
		name   string
		mark   store.Mark
		held   bool
		from   int64
		forget bool
		why    string // in the reason; "" for none
	}{
		{"no store", store.Mark{}, false, 300, false, "no store"},
		{"the tail after the covered offset", store.Mark{Next: 500, Topic: topic}, true, 500, false, ""},
		{"covered up to the end", store.Mark{Next: 900, Topic: topic}, true, 900, false, ""},
		{"covered before the window: the window", store.Mark{Next: 200, Topic: topic}, true, 300, false, ""},
		{"covered at the topic's start", store.Mark{Next: 100, Topic: topic}, true, 300, false, ""},
		{"another topic of the same name", store.Mark{Next: 500, Topic: other}, true, 300, true, "another topic"},
		{"covered before the topic's start: kept", store.Mark{Next: 99, Topic: topic}, true, 300, false, "now starts at 100"},
		{"covered past the topic's end", store.Mark{Next: 901, Topic: topic}, true, 300, true, "past the topic's end 900"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, forget, why := tail(tc.mark, tc.held, b)
			if from != tc.from || forget != tc.forget || (tc.why == "") != (why == "") || !strings.Contains(why, tc.why) {
				t.Fatalf("tail = %d, %v, %q; want %d, %v, %q", from, forget, why, tc.from, tc.forget, tc.why)
			}
		})
	}
}

// TestExpireRemovesThePaymentsPastTheWindow: a payment ordered before the
// window is no longer a duplicate, and the expiry removes it from the
// store, in steps, while those within the window stay.
func TestExpireRemovesThePaymentsPastTheWindow(t *testing.T) {
	db, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o := newOrdered(nil, "", nil, time.Hour, db, "", slog.New(slog.DiscardHandler))
	t.Cleanup(func() { o.Close() })
	o.live[0] = true // as after a restore
	now := time.Now()
	old := make([]uuid.UUID, 2*expireStep+1) // more than one step
	for i := range old {
		old[i] = uuid.New()
		if err := o.add(0, old[i], &kgo.Record{Offset: int64(i)}, now.Add(-2*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	recent := uuid.New()
	if err := o.add(0, recent, &kgo.Record{Offset: int64(len(old))}, now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	o.Commit()

	onDisk := func(id uuid.UUID) bool {
		t.Helper()
		_, _, ok, err := o.mem.Get(id[:])
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	seen := func(id uuid.UUID) (int64, bool) {
		t.Helper()
		at, ok, err := o.seen(0, id)
		if err != nil {
			t.Fatal(err)
		}
		return at, ok
	}
	if _, ok := seen(old[0]); ok || !onDisk(old[0]) {
		t.Fatalf("before the expiry: an order past the window seen %v, on disk %v; want not seen, on disk", ok, onDisk(old[0]))
	}
	o.expire(context.Background(), now)
	for _, id := range old {
		if onDisk(id) {
			t.Fatalf("payment %s ordered 2h ago still on disk after the expiry of a 1h window", id)
		}
	}
	if at, ok := seen(recent); !ok || at != int64(len(old)) || !onDisk(recent) {
		t.Fatalf("the payment ordered a minute ago: seen %v at %d; want seen at %d", ok, at, len(old))
	}
}
