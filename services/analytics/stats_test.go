package analytics

import (
	"fmt"
	"testing"
	"time"

	"github.com/blackfriday-kafka/shop/schemas"
)

// TestHistoryCountsTheMinuteUpToEachPoint: each chart point is the
// per-minute rate as /analytics would have shown it then, and the last point
// is the rate /analytics shows now.
func TestHistoryCountsTheMinuteUpToEachPoint(t *testing.T) {
	s := newStats()
	now := time.Unix(1_800_000_000, 0)
	pay := func(ago time.Duration, cents int64) {
		at := now.Add(-ago)
		s.addPayment(&schemas.PaymentSucceeded{UserID: 1, TotalCents: cents, PaidAt: at})
		s.addOrder(&schemas.OrderCreated{TotalCents: cents, CreatedAt: at})
	}
	pay(70*time.Second, 100)
	pay(30*time.Second, 250)
	pay(time.Second, 1000)
	pay(0, 5)

	h := s.history(now)
	last := len(h.Time) - 1
	if h.Time[last] != now.Unix() || h.Step != 5 || h.Time[last]-h.Time[0] != int64(historySpan/time.Second) {
		t.Fatalf("time axis %d..%d step %d, want the last %v up to now", h.Time[0], h.Time[last], h.Step, historySpan)
	}
	live := s.live(now)
	if h.PaymentsPerMinute[last] != live.PaymentsPerMinute || h.OrdersPerMinute[last] != 3 || h.RevenuePerMinute[last] != 12.55 {
		t.Fatalf("last point: %d payments, %d orders, %v euros; /analytics/live says %d payments a minute, want 3 and 12.55",
			h.PaymentsPerMinute[last], h.OrdersPerMinute[last], h.RevenuePerMinute[last], live.PaymentsPerMinute)
	}
	// 35 s ago the minute held only the payment of 70 s ago.
	if i := last - 7; h.PaymentsPerMinute[i] != 1 || h.RevenuePerMinute[i] != 1 {
		t.Fatalf("35s ago: %d payments, %v euros, want 1 and 1.00", h.PaymentsPerMinute[i], h.RevenuePerMinute[i])
	}
	// 15 min ago nothing had happened.
	if h.PaymentsPerMinute[0] != 0 || h.RevenuePerMinute[0] != 0 {
		t.Fatalf("first point: %d payments, %v euros, want none", h.PaymentsPerMinute[0], h.RevenuePerMinute[0])
	}
	// Housekeeping keeps what the charts need.
	s.forget(now)
	if h2 := s.history(now); h2.PaymentsPerMinute[last-7] != 1 {
		t.Fatal("forget dropped a second the charts still show")
	}
}

// TestMergeIsTheFiguresOfAllPartitions: the figures of partitions folded
// apart and merged are those of every event folded in one, to the cent and
// the user; a user who paid in two partitions counts once.
func TestMergeIsTheFiguresOfAllPartitions(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	one, parts := newStats(), []*Stats{newStats(), newStats(), newStats()}
	for i := range 300 {
		user := int64(1 + i%37)
		at := now.Add(-time.Duration(i) * time.Second)
		p := &schemas.PaymentSucceeded{UserID: user, TotalCents: int64(101 * i), PaidAt: at}
		o := &schemas.OrderCreated{UserID: user, TotalCents: int64(101 * i), CreatedAt: at}
		part := parts[i%3] // users in every partition: the union must count each once
		for _, s := range []*Stats{one, part} {
			s.addPayment(p)
			s.addOrder(o)
			if i%10 == 0 {
				s.addDeadLetter(schemas.PaymentDLQ.Name, "bad-magic-byte", at)
			}
		}
	}
	merged := newStats()
	for _, p := range parts {
		merged.merge(p)
	}
	want, got := one.report(now), merged.report(now)
	if got.UniqueUsers != 37 || want.UniqueUsers != 37 {
		t.Fatalf("unique users: merged %d, one fold %d, want 37", got.UniqueUsers, want.UniqueUsers)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("merged:\n%+v\none fold:\n%+v", got, want)
	}
	if fmt.Sprint(merged.history(now)) != fmt.Sprint(one.history(now)) {
		t.Fatal("the merged charts differ from one fold's")
	}
	// The control: a partition left out shows.
	less := newStats()
	less.merge(parts[0])
	less.merge(parts[1])
	if less.report(now).TotalRevenue == want.TotalRevenue {
		t.Fatal("two partitions of three merge to the whole revenue")
	}
}
