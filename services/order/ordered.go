package order

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/txn/loop"
	"github.com/blackfriday-kafka/shop/txn/view"
)

// ordered is the order step's memory of the payments it has turned into
// orders, per partition of payment-successful: the state store that lets it
// drop a payment written twice (a retried request that raced on two payment
// instances, a replayed producer) instead of ordering it twice.
//
// Its changelog is the output itself: payments and orders share the user
// key and the partition count, so the orders of payment partition p are on
// order-created partition p. When the group assigns p, ordered reads the
// orders committed there within the window; a transaction's new orders are
// kept when it commits, forgotten when it aborts.
type ordered struct {
	brokers []string
	group   string // the order service's, whose offsets must be stable first
	orders  *schemas.Codec[schemas.OrderCreated]
	window  time.Duration
	log     *slog.Logger
	opts    []kgo.Opt

	mu      sync.Mutex
	parts   map[int32]map[uuid.UUID]orderAt
	pending map[int32]map[uuid.UUID]*kgo.Record // orders of the open transaction
}

// orderAt is where a payment's order is, and when it was made.
type orderAt struct {
	offset int64 // on order-created
	at     int64 // unix seconds, for the window
}

func newOrdered(brokers []string, group string, orders *schemas.Codec[schemas.OrderCreated], window time.Duration, log *slog.Logger, opts ...kgo.Opt) *ordered {
	return &ordered{brokers: brokers, group: group, orders: orders, window: window, log: log, opts: opts,
		parts: make(map[int32]map[uuid.UUID]orderAt), pending: make(map[int32]map[uuid.UUID]*kgo.Record)}
}

// key is the ID the memory knows a payment by, and whether the payment is
// to be remembered: not when no memory is kept (o is nil), nor for an ID
// that is no UUID.
func (o *ordered) key(paymentID string) (uuid.UUID, bool) {
	if o == nil {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(paymentID)
	return id, err == nil
}

// seen returns where the order of payment id on partition p is, if the
// step made one: committed (offset), or in the open transaction (-1).
func (o *ordered) seen(p int32, id uuid.UUID) (int64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.pending[p][id]; ok {
		return -1, true
	}
	at, ok := o.parts[p][id]
	return at.offset, ok
}

// add notes the order made of payment id in the open transaction.
func (o *ordered) add(p int32, id uuid.UUID, order *kgo.Record) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pending[p] == nil {
		o.pending[p] = make(map[uuid.UUID]*kgo.Record)
	}
	o.pending[p][id] = order
}

// Commit keeps the transaction's orders, where they landed.
func (o *ordered) Commit() {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now().Unix()
	for p, orders := range o.pending {
		if o.parts[p] == nil {
			continue // revoked meanwhile
		}
		for id, r := range orders {
			o.parts[p][id] = orderAt{offset: r.Offset, at: now}
		}
	}
	clear(o.pending)
}

// Abort forgets the transaction's orders: they were never written.
func (o *ordered) Abort() {
	o.mu.Lock()
	clear(o.pending)
	o.mu.Unlock()
}

// Drop forgets partitions the group took away.
func (o *ordered) Drop(partitions []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range partitions {
		delete(o.parts, p)
		delete(o.pending, p)
	}
}

// Restore reads, for each partition, the orders committed on order-created
// within the window. It first waits until the group's offsets on the
// partitions are stable: the previous owner's last transaction, orders and
// offsets together, is then committed or aborted, so what is read is all
// the orders of the payments before the offset this instance starts from.
func (o *ordered) Restore(ctx context.Context, partitions []int32) {
	start := time.Now()
	var got map[int32]map[uuid.UUID]orderAt
	if !loop.Retry(ctx, o.log, "restoring the orders of the window failed, retrying", 100*time.Millisecond, 5*time.Second, func() (err error) {
		got, err = o.read(ctx, partitions)
		return err
	}, "partitions", partitions) {
		return
	}
	o.mu.Lock()
	n := 0
	for p, m := range got {
		o.parts[p] = m
		n += len(m)
	}
	o.mu.Unlock()
	o.log.Info("orders of the window restored", "topic", o.orders.Topic().Name, "partitions", partitions,
		"payments", n, "took", time.Since(start).Round(time.Millisecond))
}

func (o *ordered) read(ctx context.Context, partitions []int32) (map[int32]map[uuid.UUID]orderAt, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.brokers...)}, o.opts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.FetchOffsets(kadm.RequireStable(ctx), o.group); err != nil {
		return nil, err
	}
	topic := o.orders.Topic().Name
	ends, err := adm.ListCommittedOffsets(ctx, topic) // the last stable offsets
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, err
	}
	from, err := adm.ListOffsetsAfterMilli(ctx, time.Now().Add(-o.window).UnixMilli(), topic)
	if err == nil {
		err = from.Error()
	}
	if err != nil {
		return nil, err
	}
	got := make(map[int32]map[uuid.UUID]orderAt, len(partitions))
	ranges := make(map[int32][2]int64, len(partitions))
	for _, p := range partitions {
		got[p] = make(map[uuid.UUID]orderAt)
		end, _ := ends.Lookup(topic, p)
		start, _ := from.Lookup(topic, p)
		ranges[p] = [2]int64{start.Offset, end.Offset}
	}
	err = view.ReadRanges(ctx, o.brokers, o.opts, topic, ranges, func(r *kgo.Record) error {
		ord, err := o.orders.Decode(ctx, r.Value)
		if err != nil {
			return err
		}
		if id, err := uuid.Parse(ord.PaymentID); err == nil {
			got[r.Partition][id] = orderAt{offset: r.Offset, at: ord.CreatedAt.Unix()}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return got, nil
}

// forget drops the payments ordered before the window: a duplicate older
// than the window is no longer told apart. Run calls it every minute.
func (o *ordered) forget(now time.Time) {
	oldest := now.Add(-o.window).Unix()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range o.parts {
		for id, at := range m {
			if at.at < oldest {
				delete(m, id)
			}
		}
	}
}
