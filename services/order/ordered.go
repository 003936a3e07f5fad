package order

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/txn/loop"
	"github.com/blackfriday-kafka/shop/txn/store"
	"github.com/blackfriday-kafka/shop/txn/view"
)

// ordered is the order step's memory of the payments it has turned into
// orders within the window: the state store that lets it drop a payment
// written twice (a retried request that raced on two payment instances, a
// replayed producer) instead of ordering it twice.
//
// Its changelog is the output itself: payments and orders share the user
// key and the partition count, so the orders of payment partition p are on
// order-created partition p. The memory is kept on disk (txn/store), each
// payment ID with the offset of its order, and for each partition the
// offset of order-created up to which it holds every committed order. When
// the group assigns p, ordered reads only the tail of p after that offset;
// with no store, or one that does not match the topic, it reads the orders
// of the window again (a rebuild: slower, exact).
//
// Kafka stays the source of truth: a transaction's orders are written to
// the store only after the transaction committed, with the covered offset
// moved past them in the same batch. A crash between the commit and that
// write leaves the covered offset behind them, and the next assignment
// reads them from the tail. An aborted transaction's orders never reach
// the store.
type ordered struct {
	brokers []string
	group   string // the order service's, whose offsets must be stable first
	orders  *schemas.Codec[schemas.OrderCreated]
	window  time.Duration
	log     *slog.Logger
	opts    []kgo.Opt
	killAt  KillPoint

	db  *store.Store
	mem *store.Memory

	mu      sync.Mutex
	live    map[int32]bool // the partitions restored, until the group takes them away
	topic   [16]byte       // the ID of order-created, as the last restore found it
	pending map[int32]map[uuid.UUID]orderAt
	// unstored are committed orders whose write to the store failed, with
	// the offsets they cover: written before anything else is looked up.
	unstored []store.Entry
	covers   map[int32]store.Mark
}

// orderAt is where a payment's order is, and when it was made.
type orderAt struct {
	rec *kgo.Record // on order-created; its offset is set once produced
	at  time.Time
}

// MemoryName is the order step's memory in its store, keyed by payment ID
// (the UUID's 16 bytes).
const MemoryName = "ordered"

// restoreBatch is how many orders a restore writes to the store at a time.
const restoreBatch = 10_000

// expireStep bounds the entries one step of the expiry removes: a write
// of the hot path waits at most one step.
const expireStep = 1_000

func newOrdered(brokers []string, group string, orders *schemas.Codec[schemas.OrderCreated], window time.Duration, db *store.Store, killAt KillPoint, log *slog.Logger, opts ...kgo.Opt) *ordered {
	return &ordered{brokers: brokers, group: group, orders: orders, window: window, log: log, opts: opts, killAt: killAt,
		db: db, mem: db.Memory(MemoryName), live: make(map[int32]bool),
		pending: make(map[int32]map[uuid.UUID]orderAt), covers: make(map[int32]store.Mark)}
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
// step made one within the window: committed (offset), or in the open
// transaction (-1). An error (the store cannot be read or written) aborts
// the transaction, which is retried.
func (o *ordered) seen(p int32, id uuid.UUID) (int64, bool, error) {
	o.mu.Lock()
	if _, ok := o.pending[p][id]; ok {
		o.mu.Unlock()
		return -1, true, nil
	}
	err := o.flushLocked()
	o.mu.Unlock()
	if err != nil {
		return 0, false, err
	}
	v, at, ok, err := o.mem.Get(id[:])
	switch {
	case err != nil:
		return 0, false, fmt.Errorf("the orders' store: %w", err)
	case !ok || len(v) != 8:
		return 0, false, nil
	case at.Before(time.Now().Add(-o.window)):
		return 0, false, nil // past the window, to be removed by the expiry
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

// add notes the order made of payment id in the open transaction.
func (o *ordered) add(p int32, id uuid.UUID, order *kgo.Record, at time.Time) error {
	o.mu.Lock()
	if o.pending[p] == nil {
		o.pending[p] = make(map[uuid.UUID]orderAt)
	}
	o.pending[p][id] = orderAt{rec: order, at: at}
	n := 0
	if o.killAt != "" { // only the kill tests count the open transaction's orders
		for _, orders := range o.pending {
			n += len(orders)
		}
	}
	o.mu.Unlock()
	switch o.killAt {
	case KillStoredBeforeCommit:
		// The control's mistake: the order in the store before Kafka has it.
		if err := o.mem.Write([]store.Entry{entry(p, id, -1, at)}, nil); err != nil {
			return err
		}
		fallthrough
	case KillBeforeCommit:
		if n >= killAfterOrders {
			o.kill("the open transaction holds its orders, uncommitted")
		}
	}
	return nil
}

// Commit writes the transaction's orders to the store, where they landed,
// with the offsets they cover: Kafka has committed them.
func (o *ordered) Commit() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.pending) > 0 && o.killAt == KillAfterCommit {
		o.kill("the transaction committed, its orders not in the store")
	}
	for p, orders := range o.pending {
		if !o.live[p] {
			continue // revoked meanwhile: the next owner reads them from Kafka
		}
		next := o.covers[p].Next
		for id, ord := range orders {
			o.unstored = append(o.unstored, entry(p, id, ord.rec.Offset, ord.at))
			next = max(next, ord.rec.Offset+1)
		}
		o.covers[p] = store.Mark{Next: next, Topic: o.topic}
	}
	clear(o.pending)
	if err := o.flushLocked(); err != nil {
		o.log.Error("writing the committed orders to the store failed; the next payment retries it", "err", err)
	}
}

// flushLocked writes the committed orders not yet in the store; o.mu is held.
func (o *ordered) flushLocked() error {
	if len(o.unstored) == 0 && len(o.covers) == 0 {
		return nil
	}
	if err := o.mem.Write(o.unstored, o.covers); err != nil {
		return err
	}
	o.unstored = o.unstored[:0]
	clear(o.covers)
	return nil
}

// Abort forgets the transaction's orders: they were never written.
func (o *ordered) Abort() {
	o.mu.Lock()
	clear(o.pending)
	o.mu.Unlock()
}

// Drop stops serving partitions the group took away. The store keeps what
// it holds of them: if the group gives one back, its tail since is read.
func (o *ordered) Drop(partitions []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range partitions {
		delete(o.live, p)
		delete(o.pending, p)
		delete(o.covers, p)
	}
}

// Restore brings the store up to date with order-created for each
// partition: it reads the orders committed after the offset the store
// covers, or, with no store of the partition or a stale one, the orders
// of the window. It first waits until the group's offsets on the
// partitions are stable: the previous owner's last transaction, orders and
// offsets together, is then committed or aborted, so what is read up to
// the last stable offset is all the orders of the payments before the
// offset this instance starts from.
func (o *ordered) Restore(ctx context.Context, partitions []int32) {
	start := time.Now()
	var c caughtUp
	if !loop.Retry(ctx, o.log, "restoring the orders of the window failed, retrying", 100*time.Millisecond, 5*time.Second, func() (err error) {
		c, err = o.catchUp(ctx, partitions)
		return err
	}, "partitions", partitions) {
		return
	}
	o.mu.Lock()
	o.topic = c.topic
	for _, p := range partitions {
		o.live[p] = true
	}
	o.mu.Unlock()
	for p, why := range c.rebuilt {
		o.log.Info("orders of the window rebuilt from Kafka", "topic", o.orders.Topic().Name, "partition", p, "reason", why)
	}
	o.log.Info("orders of the window restored", "topic", o.orders.Topic().Name, "partitions", partitions,
		"payments", c.read, "from", c.from, "took", time.Since(start).Round(time.Millisecond))
}

// caughtUp is what a restore did: the topic's ID, the orders it read from
// Kafka, the offset it read each partition from, and why it rebuilt those
// it did.
type caughtUp struct {
	topic   [16]byte
	read    int64
	from    map[int32]int64
	rebuilt map[int32]string
}

// bounds are what a restore needs to know of a partition of order-created:
// the topic's ID, its first and end offsets, its last stable offset, and
// the first offset within the window.
type bounds struct {
	topic                      [16]byte
	start, end, stable, window int64
}

// tail says where the restore of a partition reads from, given how far the
// store covers it (held false: not at all), and why it reads the window
// again if it does (forget: the store's entries of the partition are to be
// dropped first, as Kafka no longer has them).
//
// A store that covers less than the topic still holds (retention or a
// deletion of records went past it) keeps its entries: they are orders
// Kafka committed. Only the orders between are gone, from the topic too.
func tail(mark store.Mark, held bool, b bounds) (from int64, forget bool, why string) {
	if !held {
		return b.window, false, "no store of it"
	}
	switch mark.Against(b.topic, b.start, b.end) {
	case store.OtherTopic:
		return b.window, true, "the store is of another topic of the same name"
	case store.BehindStart:
		return b.window, false, fmt.Sprintf("the store covers it up to offset %d, and the topic now starts at %d: what it holds is kept", mark.Next, b.start)
	case store.PastEnd:
		return b.window, true, fmt.Sprintf("the store covers it up to offset %d, past the topic's end %d", mark.Next, b.end)
	}
	return max(mark.Next, b.window), false, ""
}

func (o *ordered) catchUp(ctx context.Context, partitions []int32) (caughtUp, error) {
	c := caughtUp{from: make(map[int32]int64, len(partitions)), rebuilt: make(map[int32]string)}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.brokers...)}, o.opts...)...)
	if err != nil {
		return c, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.FetchOffsets(kadm.RequireStable(ctx), o.group); err != nil {
		return c, err
	}
	all, err := o.bounds(ctx, adm)
	if err != nil {
		return c, err
	}
	c.topic = all[partitions[0]].topic
	ranges := make(map[int32][2]int64, len(partitions))
	marks := make(map[int32]store.Mark, len(partitions))
	for _, p := range partitions {
		b, ok := all[p]
		if !ok {
			return c, fmt.Errorf("no offsets listed for %s/%d", o.orders.Topic().Name, p)
		}
		mark, held, err := o.mem.Covered(p)
		if err != nil {
			return c, err
		}
		from, forget, why := tail(mark, held, b)
		if forget {
			if err := o.mem.Forget(p); err != nil {
				return c, err
			}
			mark = store.Mark{}
		}
		if why != "" {
			c.rebuilt[p] = why
		}
		c.from[p], marks[p] = from, mark
		ranges[p] = [2]int64{from, b.stable}
	}

	oldest := time.Now().Add(-o.window)
	batch := make([]store.Entry, 0, restoreBatch)
	covers := make(map[int32]store.Mark)
	write := func() error {
		err := o.mem.Write(batch, covers)
		batch = batch[:0]
		clear(covers)
		return err
	}
	err = view.ReadRanges(ctx, o.brokers, o.opts, o.orders.Topic().Name, ranges, func(r *kgo.Record) error {
		ord, err := o.orders.Decode(ctx, r.Value)
		if err != nil {
			return err
		}
		if id, err := uuid.Parse(ord.PaymentID); err == nil && !ord.CreatedAt.Before(oldest) {
			batch = append(batch, entry(r.Partition, id, r.Offset, ord.CreatedAt))
			c.read++
		}
		covers[r.Partition] = store.Mark{Next: r.Offset + 1, Topic: c.topic}
		if len(batch) == restoreBatch {
			return write()
		}
		return nil
	})
	if err != nil {
		return c, err
	}
	// Each partition is now covered up to its last stable offset; the
	// store may cover more, orders this instance committed since.
	for p, r := range ranges {
		if marks[p].Next < r[1] || marks[p].Topic != c.topic {
			covers[p] = store.Mark{Next: max(r[1], marks[p].Next), Topic: c.topic}
		}
	}
	return c, write()
}

// bounds lists, for each partition of order-created, what tail needs.
func (o *ordered) bounds(ctx context.Context, adm *kadm.Client) (map[int32]bounds, error) {
	topic := o.orders.Topic().Name
	details, err := adm.ListTopics(ctx, topic)
	if err == nil {
		err = details.Error()
	}
	if err != nil {
		return nil, err
	}
	id := details[topic].ID
	list := func(name string, f func() (kadm.ListedOffsets, error)) (kadm.ListedOffsets, error) {
		l, err := f()
		if err == nil {
			err = l.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("listing the %s offsets of %s: %w", name, topic, err)
		}
		return l, nil
	}
	starts, err := list("start", func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(ctx, topic) })
	if err != nil {
		return nil, err
	}
	ends, err := list("end", func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(ctx, topic) })
	if err != nil {
		return nil, err
	}
	stable, err := list("last stable", func() (kadm.ListedOffsets, error) { return adm.ListCommittedOffsets(ctx, topic) })
	if err != nil {
		return nil, err
	}
	window, err := list("window's first", func() (kadm.ListedOffsets, error) {
		return adm.ListOffsetsAfterMilli(ctx, time.Now().Add(-o.window).UnixMilli(), topic)
	})
	if err != nil {
		return nil, err
	}
	out := make(map[int32]bounds)
	ends.Each(func(e kadm.ListedOffset) {
		s, _ := starts.Lookup(topic, e.Partition)
		st, _ := stable.Lookup(topic, e.Partition)
		w, _ := window.Lookup(topic, e.Partition)
		out[e.Partition] = bounds{topic: id, start: s.Offset, end: e.Offset, stable: st.Offset, window: max(w.Offset, s.Offset)}
	})
	return out, nil
}

// entry is the store's entry of the order of payment id on partition p, at
// offset of order-created, made at at.
func entry(p int32, id uuid.UUID, offset int64, at time.Time) store.Entry {
	return store.Entry{Key: id[:], Value: binary.BigEndian.AppendUint64(nil, uint64(offset)), At: at, Partition: p}
}

// expire removes from the store the payments ordered before the window, a
// step at a time: a duplicate older than the window is no longer told
// apart. Run calls it every expireEvery.
func (o *ordered) expire(ctx context.Context, now time.Time) {
	before := now.Add(-o.window)
	removed := 0
	for ctx.Err() == nil {
		n, err := o.mem.Expire(before, expireStep)
		if err != nil {
			o.log.Warn("removing the orders past the window from the store failed; retried at the next round", "err", err)
			return
		}
		removed += n
		if n < expireStep {
			break
		}
	}
	if removed > 0 {
		o.log.Debug("orders past the window removed from the store", "entries", removed, "before", before)
	}
}

// expireEvery is how often the expiry runs.
const expireEvery = 10 * time.Second

// Close closes the store, once the stage stopped: a restore still under
// way then gets store.ErrClosed, and gives up with its context.
func (o *ordered) Close() error { return o.db.Close() }
