package analytics

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/blackfriday-kafka/shop/schemas"
)

// window is the span of the per-minute rates.
const window = time.Minute

// Stats are the shop's numbers, folded from committed events. Rates count
// events by their own time (paid_at, created_at), not by when analytics read
// them, so a replay after a restart gives the same figures.
type Stats struct {
	mu           sync.RWMutex
	payments     int64
	orders       int64
	emails       int64
	revenueCents int64
	users        map[int64]struct{}
	deadLetters  map[string]int64 // by error class
	byTopic      map[string]int64 // events folded, by topic
	paymentsAt   map[int64]int64  // unix second -> payments paid then
	ordersAt     map[int64]int64  // unix second -> orders created then
	lastUpdated  time.Time
}

func newStats() *Stats {
	return &Stats{
		users:       make(map[int64]struct{}),
		deadLetters: make(map[string]int64),
		byTopic:     make(map[string]int64),
		paymentsAt:  make(map[int64]int64),
		ordersAt:    make(map[int64]int64),
	}
}

func (s *Stats) addPayment(p *schemas.PaymentSucceeded) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.payments++
	s.byTopic[schemas.TopicPayments]++
	s.users[p.UserID] = struct{}{}
	s.paymentsAt[p.PaidAt.Unix()]++
	s.touch(p.PaidAt)
}

func (s *Stats) addOrder(o *schemas.OrderCreated) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orders++
	s.byTopic[schemas.TopicOrders]++
	s.revenueCents += o.TotalCents
	s.ordersAt[o.CreatedAt.Unix()]++
	s.touch(o.CreatedAt)
}

func (s *Stats) addEmail(e *schemas.EmailSent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.emails++
	s.byTopic[schemas.TopicEmails]++
	s.touch(e.SentAt)
}

func (s *Stats) addDeadLetter(topic, class string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadLetters[class]++
	s.byTopic[topic]++
	s.touch(at)
}

func (s *Stats) touch(at time.Time) {
	if at.After(s.lastUpdated) {
		s.lastUpdated = at
	}
}

// forget drops rate buckets older than the window; the totals stay.
func (s *Stats) forget(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	oldest := now.Add(-window).Unix()
	for _, m := range []map[int64]int64{s.paymentsAt, s.ordersAt} {
		for sec := range m {
			if sec < oldest {
				delete(m, sec)
			}
		}
	}
}

// Report is /analytics.
type Report struct {
	TotalPayments     int64            `json:"total_payments"`
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
		TotalPayments:     s.payments,
		TotalOrders:       s.orders,
		TotalEmails:       s.emails,
		TotalRevenue:      schemas.Euros(s.revenueCents),
		UniqueUsers:       len(s.users),
		Users:             make([]int64, 0, min(len(s.users), maxUsersShown)),
		PaymentsPerMinute: perMinute(s.paymentsAt, now),
		OrdersPerMinute:   perMinute(s.ordersAt, now),
		DLQByClass:        make(map[string]int64, len(s.deadLetters)),
		LastUpdated:       s.lastUpdatedPtr(),
	}
	for u := range s.users {
		r.Users = append(r.Users, u)
	}
	slices.Sort(r.Users)
	r.Users = r.Users[:min(len(r.Users), maxUsersShown)]
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
	return len(s.users)
}
