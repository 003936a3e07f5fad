package main

import (
	"fmt"
	"io"
	"iter"
	"maps"
	"sort"
	"strings"

	"github.com/blackfriday-kafka/shop/schemas"
)

// Ledger is what the topics hold at the end of a run, read with
// read_committed from the beginning, next to what the run sent.
type Ledger struct {
	Accepted map[string]int64 // payment (ID, or marker in HTTP mode) -> total cents, every payment acknowledged
	Orders   []OrderSeen      // order-created, in log order
	Emails   []EmailSeen      // email-sent, in log order

	// Uncommitted counts of the output topics read with read_uncommitted:
	// the records of aborted transactions are the difference.
	OrdersUncommitted int
	EmailsUncommitted int

	// The whole of order-created, earlier runs included, and what
	// analytics made of it after replaying the log, if it ran.
	TopicOrders      int64
	TopicRevenue     int64 // cents
	AnalyticsOrders  int64
	AnalyticsRevenue int64 // cents
	AnalyticsChecked bool

	// The mail server's inbox by Message-ID, once the instances stopped,
	// if the run delivered.
	Messages        map[string]int
	MessagesChecked bool
}

// OrderSeen is one record of order-created.
type OrderSeen struct {
	OrderID, PaymentID string
	TotalCents         int64
	// Payment is the payment the client meant, the key of Accepted: its
	// marker in HTTP mode, where a retry without an Idempotency-Key makes
	// a payment ID of its own; "" is PaymentID.
	Payment string
}

// payment is the key of o's payment in Ledger.Accepted.
func (o OrderSeen) payment() string {
	if o.Payment != "" {
		return o.Payment
	}
	return o.PaymentID
}

// EmailSeen is one record of email-sent.
type EmailSeen struct {
	EmailID, OrderID string
}

// Verdict is what the checker found. Every list names the IDs at fault.
type Verdict struct {
	In, Orders, Emails int

	DuplicateOrders []string // payments with more than one order
	DuplicateEmails []string // order IDs with more than one email
	LostOrders      []string // accepted payment IDs without an order
	LostEmails      []string // order IDs without an email
	StrayOrders     []string // orders of no accepted payment, or with a wrong ID
	StrayEmails     []string // emails of no order, or with a wrong ID
	WrongTotals     []string // orders whose total is not their payment's cart
	AnalyticsOff    string   // analytics disagreeing with the topics
	LostMessages    []string // order IDs whose email never reached the mail server

	// The boundary's price: messages of this run's orders, distinct by
	// Message-ID and as the inbox holds them, resends included.
	Messages, RawMessages int
	MessagesChecked       bool

	Aborted int // records written then aborted, hidden from read_committed

	// The run's revenue: its orders' totals, and the carts of the
	// payments accepted; equal when every payment has one right order.
	OrderRevenue, CartRevenue int64 // cents

	extra int // records beyond the first of their kind
}

// Duplicates counts the records beyond the first for the same payment or order.
func (v Verdict) Duplicates() int { return v.extra }

// Lost counts records and messages that should exist and do not.
func (v Verdict) Lost() int { return len(v.LostOrders) + len(v.LostEmails) + len(v.LostMessages) }

// MessageDuplicates counts the messages the mail server got again, with the
// Message-ID of one it had: at-least-once delivery, not a violation.
func (v Verdict) MessageDuplicates() int { return v.RawMessages - v.Messages }

// OK is true when the run was exactly-once.
func (v Verdict) OK() bool {
	return v.Duplicates() == 0 && v.Lost() == 0 && len(v.StrayOrders) == 0 && len(v.StrayEmails) == 0 && len(v.WrongTotals) == 0 && v.AnalyticsOff == ""
}

// Check holds the ledger to exactly-once: one order per accepted payment, one
// email per order, nothing else, and analytics agreeing with the topics;
// and, if the inbox was read, one distinct message per order on the mail
// server, resends counted but no violation. orderID, emailID and messageID
// are the derivations the services use.
func Check(l Ledger, orderID, emailID, messageID func(string) string) Verdict {
	v := Verdict{In: len(l.Accepted), Orders: len(l.Orders), Emails: len(l.Emails)}
	v.Aborted = l.OrdersUncommitted - len(l.Orders) + l.EmailsUncommitted - len(l.Emails)

	ordersOf := make(map[string]int, len(l.Orders))
	orderIDs := make(map[string]bool, len(l.Orders))
	for _, o := range l.Orders {
		if _, ok := l.Accepted[o.payment()]; !ok || o.OrderID != orderID(o.PaymentID) {
			v.StrayOrders = append(v.StrayOrders, o.OrderID)
			continue
		}
		ordersOf[o.payment()]++
		orderIDs[o.OrderID] = true
		v.OrderRevenue += o.TotalCents
		if o.TotalCents != l.Accepted[o.payment()] {
			v.WrongTotals = append(v.WrongTotals, o.OrderID)
		}
	}
	for _, total := range l.Accepted {
		v.CartRevenue += total
	}
	v.LostOrders, v.DuplicateOrders = v.oneEach(maps.Keys(l.Accepted), ordersOf)

	emailsOf := make(map[string]int, len(l.Emails))
	for _, e := range l.Emails {
		if !orderIDs[e.OrderID] || e.EmailID != emailID(e.OrderID) {
			v.StrayEmails = append(v.StrayEmails, e.EmailID)
			continue
		}
		emailsOf[e.OrderID]++
	}
	v.LostEmails, v.DuplicateEmails = v.oneEach(maps.Keys(orderIDs), emailsOf)

	if l.MessagesChecked {
		v.MessagesChecked = true
		for id := range orderIDs {
			if emailsOf[id] == 0 {
				continue // a lost email already
			}
			switch n := l.Messages[messageID(emailID(id))]; n {
			case 0:
				v.LostMessages = append(v.LostMessages, id)
			default:
				v.Messages++
				v.RawMessages += n
			}
		}
	}

	if l.AnalyticsChecked && (l.AnalyticsOrders != l.TopicOrders || l.AnalyticsRevenue != l.TopicRevenue) {
		v.AnalyticsOff = fmt.Sprintf("analytics counts %d orders and %d cents, the topic holds %d orders and %d cents",
			l.AnalyticsOrders, l.AnalyticsRevenue, l.TopicOrders, l.TopicRevenue)
	}
	for _, ids := range [][]string{v.DuplicateOrders, v.DuplicateEmails, v.LostOrders, v.LostEmails, v.StrayOrders, v.StrayEmails, v.WrongTotals, v.LostMessages} {
		sort.Strings(ids)
	}
	return v
}

// oneEach holds each of ids to one record in count: the IDs with none are
// lost, those with more are duplicated, and v counts their extra records.
func (v *Verdict) oneEach(ids iter.Seq[string], count map[string]int) (lost, duplicated []string) {
	for id := range ids {
		switch n := count[id]; {
		case n == 0:
			lost = append(lost, id)
		case n > 1:
			duplicated = append(duplicated, id)
			v.extra += n - 1
		}
	}
	return lost, duplicated
}

// Report writes every violation with its IDs (the first 20 of each kind).
func (v Verdict) Report(w io.Writer) {
	section := func(title string, ids []string) {
		if len(ids) == 0 {
			return
		}
		shown := ids[:min(len(ids), 20)]
		more := ""
		if len(ids) > len(shown) {
			more = fmt.Sprintf(" … and %d more", len(ids)-len(shown))
		}
		fmt.Fprintf(w, "  %s (%d): %s%s\n", title, len(ids), strings.Join(shown, " "), more)
	}
	section("payments with more than one order", v.DuplicateOrders)
	section("orders with more than one email", v.DuplicateEmails)
	section("accepted payments without an order", v.LostOrders)
	section("orders without an email", v.LostEmails)
	section("orders of no accepted payment", v.StrayOrders)
	section("emails of no order", v.StrayEmails)
	section("orders whose total is not their payment's cart", v.WrongTotals)
	section("orders whose email never reached the mail server", v.LostMessages)
	if v.AnalyticsOff != "" {
		fmt.Fprintf(w, "  %s\n", v.AnalyticsOff)
	}
	fmt.Fprintf(w, "  revenue of the run's orders: %s, of the accepted carts: %s\n", schemas.Euros(v.OrderRevenue), schemas.Euros(v.CartRevenue))
	fmt.Fprintf(w, "  aborted records hidden from read_committed: %d\n", v.Aborted)
	if v.MessagesChecked {
		fmt.Fprintf(w, "  smtp: %d distinct messages for %d orders, %d in the inbox: %d duplicates (sent again, same Message-ID), %d missing\n",
			v.Messages, v.Messages+len(v.LostMessages), v.RawMessages, v.MessageDuplicates(), len(v.LostMessages))
	}
}

// Line is the last line of a run, the one checks read.
func (v Verdict) Line(n Counts) string {
	return fmt.Sprintf("exactly-once: in=%d orders=%d emails=%d duplicates=%d lost=%d kills=%d pauses=%d partitions=%d",
		v.In, v.Orders, v.Emails, v.Duplicates(), v.Lost(), n.Kills, n.Pauses, n.Partitions)
}
