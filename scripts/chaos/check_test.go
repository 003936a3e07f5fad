package main

import (
	"strings"
	"testing"
)

func orderOf(p string) string   { return "o-" + p }
func emailOf(o string) string   { return "e-" + o }
func messageOf(e string) string { return e + "@shop" }

// clean is a ledger of n payments, each with its order and email.
func clean(n int) Ledger {
	l := Ledger{Accepted: map[string]int64{}}
	for i := 0; i < n; i++ {
		p := string(rune('a' + i))
		l.Accepted[p] = 100
		l.Orders = append(l.Orders, OrderSeen{OrderID: orderOf(p), PaymentID: p, TotalCents: 100})
		l.Emails = append(l.Emails, EmailSeen{EmailID: emailOf(orderOf(p)), OrderID: orderOf(p)})
	}
	l.OrdersUncommitted, l.EmailsUncommitted = n, n
	l.TopicOrders, l.TopicRevenue = int64(n), int64(100*n)
	l.MessagesChecked, l.Messages = true, map[string]int{}
	for _, e := range l.Emails {
		l.Messages[messageOf(e.EmailID)] = 1
	}
	l.Messages["earlier-run@shop"] = 1 // another run's message in a shared inbox
	return l
}

// The checker must catch each kind of violation it claims to, and pass a
// clean run: a checker that cannot fail proves nothing.
func TestCheckCatchesEveryViolation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		spoil  func(*Ledger)
		ok     bool
		dups   int
		lost   int
		report string
	}{
		{"clean run", func(*Ledger) {}, true, 0, 0, ""},
		{"aborted records hidden", func(l *Ledger) { l.OrdersUncommitted += 7 }, true, 0, 0, "hidden from read_committed: 7"},
		{"an order twice", func(l *Ledger) { l.Orders = append(l.Orders, l.Orders[1]) }, false, 1, 0, "more than one order (1): b"},
		{"an email three times", func(l *Ledger) { l.Emails = append(l.Emails, l.Emails[0], l.Emails[0]) }, false, 2, 0, "more than one email (1): o-a"},
		{"an order lost", func(l *Ledger) { l.Orders = l.Orders[1:]; l.Emails = l.Emails[1:] }, false, 0, 1, "without an order (1): a"},
		{"an email lost", func(l *Ledger) { l.Emails = l.Emails[:2] }, false, 0, 1, "without an email (1): o-c"},
		{"a retry without a key, a second payment ID", func(l *Ledger) {
			for i := range l.Orders {
				l.Orders[i].Payment = l.Orders[i].PaymentID
			}
			l.Orders = append(l.Orders, OrderSeen{OrderID: orderOf("b2"), PaymentID: "b2", TotalCents: 100, Payment: "b"})
			l.Emails = append(l.Emails, EmailSeen{EmailID: emailOf(orderOf("b2")), OrderID: orderOf("b2")})
			l.Messages[messageOf(emailOf(orderOf("b2")))] = 1
		}, false, 1, 0, "more than one order (1): b"},
		{"an order of no payment", func(l *Ledger) {
			l.Orders = append(l.Orders, OrderSeen{OrderID: orderOf("zz"), PaymentID: "zz"})
		}, false, 0, 0, "orders of no accepted payment (1): o-zz"},
		{"an order with a drawn ID", func(l *Ledger) { l.Orders[0].OrderID = "random" }, false, 0, 1, "orders of no accepted payment (1): random"},
		{"an order of the wrong total", func(l *Ledger) { l.Orders[2].TotalCents = 99 }, false, 0, 0,
			"total is not their payment's cart (1): o-c\n  revenue of the run's orders: 2.99, of the accepted carts: 3.00"},
		{"revenue of a clean run", func(*Ledger) {}, true, 0, 0, "revenue of the run's orders: 3.00, of the accepted carts: 3.00"},
		{"analytics off by a cent", func(l *Ledger) {
			l.AnalyticsChecked, l.AnalyticsOrders, l.AnalyticsRevenue = true, 3, 299
		}, false, 0, 0, "analytics counts 3 orders and 299 cents"},
		{"analytics right", func(l *Ledger) {
			l.AnalyticsChecked, l.AnalyticsOrders, l.AnalyticsRevenue = true, 3, 300
		}, true, 0, 0, ""},
		{"a message sent twice", func(l *Ledger) { l.Messages[messageOf(emailOf(orderOf("b")))] = 2 }, true, 0, 0,
			"smtp: 3 distinct messages for 3 orders, 4 in the inbox: 1 duplicates (sent again, same Message-ID), 0 missing"},
		{"a message missing", func(l *Ledger) { delete(l.Messages, messageOf(emailOf(orderOf("c")))) }, false, 0, 1,
			"never reached the mail server (1): o-c"},
		{"a message under a drawn Message-ID", func(l *Ledger) {
			delete(l.Messages, messageOf(emailOf(orderOf("a"))))
			l.Messages["random@shop"] = 1
		}, false, 0, 1, "never reached the mail server (1): o-a"},
		{"no inbox read", func(l *Ledger) { l.MessagesChecked, l.Messages = false, nil }, true, 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := clean(3)
			tc.spoil(&l)
			v := Check(l, orderOf, emailOf, messageOf)
			var report strings.Builder
			v.Report(&report)
			if v.OK() != tc.ok || v.Duplicates() != tc.dups || v.Lost() != tc.lost || !strings.Contains(report.String(), tc.report) {
				t.Fatalf("ok=%v duplicates=%d lost=%d, want %v %d %d; report:\n%s", v.OK(), v.Duplicates(), v.Lost(), tc.ok, tc.dups, tc.lost, report.String())
			}
		})
	}
	if got := Check(clean(3), orderOf, emailOf, messageOf).Line(Counts{Kills: 4, Pauses: 12, Partitions: 2}); got != "exactly-once: in=3 orders=3 emails=3 duplicates=0 lost=0 kills=4 pauses=12 partitions=2" {
		t.Fatalf("line = %q", got)
	}
}
