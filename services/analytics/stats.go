package analytics

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2/roaring64"

	"github.com/blackfriday-kafka/shop/schemas"
)

// window is the span of the per-minute rates.
const window = time.Minute

// historySpan is how far back the dashboard's charts go.
const historySpan = 15 * time.Minute

// Stats are the shop's numbers, folded from committed events. Rates count
// events by their own time (paid_at, created_at), not by when analytics read
// them, so a replay after a restart gives the same figures.
type Stats struct {
	mu           sync.RWMutex
	payments     int64 // read on payment-successful, duplicates included
	duplicates   int64 // payments the order service dropped as already ordered
	orders       int64
	emails       int64
	revenueCents int64
	users        *roaring64.Bitmap // who paid: exact, compressed
	deadLetters  map[string]int64  // by error class
	byTopic      map[string]int64  // events folded, by topic
	paymentsAt   map[int64]int64   // unix second -> payments paid then
	ordersAt     map[int64]int64   // unix second -> orders created then
	revenueAt    map[int64]int64   // unix second -> cents of the orders created then
	lastUpdated  time.Time
}

func newStats() *Stats {
	return &Stats{
		users:       roaring64.New(),
		deadLetters: make(map[string]int64),
		byTopic:     make(map[string]int64),
		paymentsAt:  make(map[int64]int64),
		ordersAt:    make(map[int64]int64),
		revenueAt:   make(map[int64]int64),
	}
}

// addValidPayment counts a valid payment; an invalid one is refused by
// the order service and counted as a dead letter.
func (s *Stats) addValidPayment(p *schemas.PaymentSucceeded) {
	if schemas.ValidatePayment(p) == nil {
		s.addPayment(p)
	}
}

func (s *Stats) addPayment(p *schemas.PaymentSucceeded) {
	s.fold(schemas.Payments.Name, p.PaidAt, func() {
		s.payments++
		s.users.Add(uint64(p.UserID)) // valid payments have user_id > 0
		s.paymentsAt[p.PaidAt.Unix()]++
	})
}

func (s *Stats) addOrder(o *schemas.OrderCreated) {
	s.fold(schemas.Orders.Name, o.CreatedAt, func() {
		s.orders++
		s.revenueCents += o.TotalCents
		s.ordersAt[o.CreatedAt.Unix()]++
		s.revenueAt[o.CreatedAt.Unix()] += o.TotalCents
	})
}

// addDuplicate takes back a payment counted twice: the order service saw
// its payment_id before and made no second order of it.
func (s *Stats) addDuplicate(d *schemas.PaymentDuplicate) {
	s.fold(schemas.Duplicates.Name, d.DroppedAt, func() { s.duplicates++ })
}

func (s *Stats) addEmail(e *schemas.EmailSent) {
	s.fold(schemas.Emails.Name, e.SentAt, func() { s.emails++ })
}

func (s *Stats) addDeadLetter(topic, class string, at time.Time) {
	s.fold(topic, at, func() { s.deadLetters[class]++ })
}

// fold counts one event of topic that happened at, with what else add
// makes of it, under the lock.
func (s *Stats) fold(topic string, at time.Time, add func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	add()
	s.byTopic[topic]++
	s.touch(at)
}

func (s *Stats) touch(at time.Time) {
	if at.After(s.lastUpdated) {
		s.lastUpdated = at
	}
}

// merge adds the figures of o, another partition's: the counts and the
// per-second buckets add up, the users' bitmaps unite (a user counts once
// however many partitions they paid in).
func (s *Stats) merge(o *Stats) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.payments += o.payments
	s.duplicates += o.duplicates
	s.orders += o.orders
	s.emails += o.emails
	s.revenueCents += o.revenueCents
	s.users.Or(o.users)
	for _, m := range [][2]map[string]int64{{s.deadLetters, o.deadLetters}, {s.byTopic, o.byTopic}} {
		for k, n := range m[1] {
			m[0][k] += n
		}
	}
	for _, m := range [][2]map[int64]int64{{s.paymentsAt, o.paymentsAt}, {s.ordersAt, o.ordersAt}, {s.revenueAt, o.revenueAt}} {
		for k, n := range m[1] {
			m[0][k] += n
		}
	}
	s.touch(o.lastUpdated)
}

// forget drops rate buckets older than the charts need; the totals stay.
func (s *Stats) forget(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	oldest := now.Add(-historySpan - window).Unix()
	for _, m := range []map[int64]int64{s.paymentsAt, s.ordersAt, s.revenueAt} {
		for sec := range m {
			if sec < oldest {
				delete(m, sec)
			}
		}
	}
}

// Report is /analytics.
type Report struct {
	TotalPayments     int64            `json:"total_payments"` // each payment once, however often it was written
	DuplicatesDropped int64            `json:"duplicates_dropped"`
	TotalOrders       int64            `json:"total_orders"`
	TotalEmails       int64            `json:"total_emails"`
	TotalRevenue      schemas.Euros    `json:"total_revenue"`
	UniqueUsers       int              `json:"unique_users"`
	Users             []int64          `json:"users"`
	PaymentsPerMinute int64            `json:"payments_per_minute"`
	OrdersPerMinute   int64            `json:"orders_per_minute"`
	DLQMessages       int64            `json:"dlq_messages"`
	DLQByClass        map[string]int64 `json:"dlq_by_class"`
	LastUpdated       *time.Time       `json:"last_updated"`
}

// Live is /analytics/live: the figures that move.
type Live struct {
	PaymentsPerMinute int64         `json:"payments_per_minute"`
	OrdersPerMinute   int64         `json:"orders_per_minute"`
	TotalRevenue      schemas.Euros `json:"total_revenue"`
	LastUpdated       *time.Time    `json:"last_updated"`
}

// maxUsersShown bounds the users list of /analytics; unique_users counts all.
const maxUsersShown = 100

func (s *Stats) report(now time.Time) Report {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := Report{
		TotalPayments:     s.payments - s.duplicates,
		DuplicatesDropped: s.duplicates,
		TotalOrders:       s.orders,
		TotalEmails:       s.emails,
		TotalRevenue:      schemas.Euros(s.revenueCents),
		UniqueUsers:       int(s.users.GetCardinality()),
		Users:             make([]int64, 0, min(int(s.users.GetCardinality()), maxUsersShown)),
		PaymentsPerMinute: perMinute(s.paymentsAt, now),
		OrdersPerMinute:   perMinute(s.ordersAt, now),
		DLQByClass:        make(map[string]int64, len(s.deadLetters)),
		LastUpdated:       s.lastUpdatedPtr(),
	}
	for it := s.users.Iterator(); it.HasNext() && len(r.Users) < maxUsersShown; { // in ascending order
		r.Users = append(r.Users, int64(it.Next()))
	}
	for class, n := range s.deadLetters {
		r.DLQByClass[class] = n
		r.DLQMessages += n
	}
	return r
}

func (s *Stats) live(now time.Time) Live {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Live{
		PaymentsPerMinute: perMinute(s.paymentsAt, now),
		OrdersPerMinute:   perMinute(s.ordersAt, now),
		TotalRevenue:      schemas.Euros(s.revenueCents),
		LastUpdated:       s.lastUpdatedPtr(),
	}
}

func (s *Stats) lastUpdatedPtr() *time.Time {
	if s.lastUpdated.IsZero() {
		return nil
	}
	t := s.lastUpdated
	return &t
}

// perMinute counts the events of the last minute up to now.
func perMinute(at map[int64]int64, now time.Time) int64 {
	var n int64
	from, to := now.Add(-window).Unix(), now.Unix()
	for sec, c := range at {
		if sec > from && sec <= to {
			n += c
		}
	}
	return n
}

// History is the dashboard's charts: the per-minute rates, each point
// counting the minute up to its time, as /analytics counts them.
type History struct {
	Step              int64     `json:"step_seconds"`
	Time              []int64   `json:"time"` // unix seconds, oldest first; the last is now
	PaymentsPerMinute []int64   `json:"payments_per_minute"`
	OrdersPerMinute   []int64   `json:"orders_per_minute"`
	RevenuePerMinute  []float64 `json:"revenue_per_minute"` // euros
}

// historyStep is the spacing of the chart points.
const historyStep = 5 * time.Second

func (s *Stats) history(now time.Time) History {
	s.mu.RLock()
	defer s.mu.RUnlock()
	step := int64(historyStep / time.Second)
	points := int(historySpan/historyStep) + 1
	h := History{
		Step:              step,
		Time:              make([]int64, points),
		PaymentsPerMinute: make([]int64, points),
		OrdersPerMinute:   make([]int64, points),
		RevenuePerMinute:  make([]float64, points),
	}
	end := now.Unix()
	first := end - int64(points-1)*step
	payments := sliding(s.paymentsAt, first, end)
	orders := sliding(s.ordersAt, first, end)
	revenue := sliding(s.revenueAt, first, end)
	for i := range points {
		t := first + int64(i)*step
		h.Time[i] = t
		h.PaymentsPerMinute[i] = payments(t)
		h.OrdersPerMinute[i] = orders(t)
		h.RevenuePerMinute[i] = float64(revenue(t)) / 100
	}
	return h
}

// sliding sums per-second counts over the minute up to any second from
// first to last, with a prefix sum: perMinute for many points at once.
func sliding(at map[int64]int64, first, last int64) func(t int64) int64 {
	w := int64(window / time.Second)
	from := first - w // prefix[i] sums the seconds from+1 .. from+i
	prefix := make([]int64, last-from+1)
	for i := int64(1); i < int64(len(prefix)); i++ {
		prefix[i] = prefix[i-1] + at[from+i]
	}
	return func(t int64) int64 { return prefix[t-from] - prefix[t-w-from] }
}

// topicCounts are the events folded so far, by topic.
func (s *Stats) topicCounts() map[string]int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return maps.Clone(s.byTopic)
}

// deadLetterCounts are the dead letters so far, by error class.
func (s *Stats) deadLetterCounts() map[string]int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return maps.Clone(s.deadLetters)
}

func (s *Stats) revenueEuros() float64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return float64(s.revenueCents) / 100
}

func (s *Stats) uniqueUsers() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int(s.users.GetCardinality())
}

// snapshotVersion changes whenever snapshot does: a checkpoint of another
// version is not restored (the view reads the log from the start instead).
const snapshotVersion = 2

// snapshot is Stats as a checkpoint keeps them.
type snapshot struct {
	Version                              int
	Payments, Duplicates, Orders, Emails int64
	RevenueCents                         int64
	Users                                []byte // roaring64, portable format
	DeadLetters, ByTopic                 map[string]int64
	PaymentsAt, OrdersAt, RevenueAt      map[int64]int64
	LastUpdated                          time.Time
}

// Snapshot encodes the figures for a checkpoint.
func (s *Stats) Snapshot() ([]byte, error) {
	// The write lock only for RunOptimize, which rewrites the bitmap's
	// containers in place; the encoding, of megabytes perhaps, only reads
	// and leaves /analytics and /metrics free meanwhile.
	s.mu.Lock()
	s.users.RunOptimize()
	s.mu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	users, err := s.users.ToBytes()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = gob.NewEncoder(&buf).Encode(snapshot{
		Version: snapshotVersion, Payments: s.payments, Duplicates: s.duplicates, Orders: s.orders, Emails: s.emails, RevenueCents: s.revenueCents,
		Users: users, DeadLetters: s.deadLetters, ByTopic: s.byTopic,
		PaymentsAt: s.paymentsAt, OrdersAt: s.ordersAt, RevenueAt: s.revenueAt, LastUpdated: s.lastUpdated,
	})
	return buf.Bytes(), err
}

// Restore replaces the figures with those of a checkpoint.
func (s *Stats) Restore(b []byte) error {
	var snap snapshot
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&snap); err != nil {
		return err
	}
	if snap.Version != snapshotVersion {
		return fmt.Errorf("checkpoint of version %d, this build reads %d", snap.Version, snapshotVersion)
	}
	users := roaring64.New()
	if err := users.UnmarshalBinary(snap.Users); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.payments, s.duplicates, s.orders, s.emails, s.revenueCents = snap.Payments, snap.Duplicates, snap.Orders, snap.Emails, snap.RevenueCents
	s.users, s.lastUpdated = users, snap.LastUpdated
	s.deadLetters, s.byTopic = orEmpty(snap.DeadLetters), orEmpty(snap.ByTopic)
	s.paymentsAt, s.ordersAt, s.revenueAt = orEmpty(snap.PaymentsAt), orEmpty(snap.OrdersAt), orEmpty(snap.RevenueAt)
	return nil
}

// orEmpty is m, or an empty map for a nil one (gob leaves empty maps nil).
func orEmpty[K comparable](m map[K]int64) map[K]int64 {
	if m == nil {
		return make(map[K]int64)
	}
	return m
}
