package order

import (
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn/store"
)

// BenchmarkSeen is the order step's lookup of a payment in its memory on
// disk, holding 1,000,000 orders: a new payment (the common case, which
// the bloom filters answer) and one already ordered. Then a transaction's
// write of 1,000 orders once it committed.
//
//	go test -run '^$' -bench Seen -benchmem ./services/order/
func BenchmarkSeen(b *testing.B) {
	dir := b.TempDir()
	open := func() *ordered {
		db, err := store.Open(dir, store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		o := newOrdered(nil, "", nil, time.Hour, db, "", slog.New(slog.DiscardHandler))
		o.live[0] = true // as after a restore
		return o
	}
	o := open()
	now := time.Now()
	var known []uuid.UUID
	for i := range 1_000_000 {
		id := uuid.New()
		if i%1000 == 0 {
			known = append(known, id)
		}
		if err := o.add(0, id, &kgo.Record{Offset: int64(i)}, now); err != nil {
			b.Fatal(err)
		}
		if i%10_000 == 9_999 {
			o.Commit()
		}
	}
	// As a restart finds it: closed once its compactions settled.
	if err := o.Close(); err != nil {
		b.Fatal(err)
	}
	o = open()
	b.Cleanup(func() { o.Close() })
	b.Run("new", func(b *testing.B) {
		for b.Loop() {
			if _, ok, err := o.seen(0, uuid.New()); ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("ordered", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, ok, err := o.seen(0, known[i%len(known)]); !ok || err != nil {
				b.Fatal(ok, err)
			}
			i++
		}
	})
	b.Run("commit-1000", func(b *testing.B) {
		offset := int64(1_000_000)
		for b.Loop() {
			for range 1000 {
				if err := o.add(0, uuid.New(), &kgo.Record{Offset: offset}, now); err != nil {
					b.Fatal(err)
				}
				offset++
			}
			o.Commit()
		}
	})
}
