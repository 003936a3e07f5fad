package email_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/infra/mailbox"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/email"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
	"github.com/blackfriday-kafka/shop/txn/view"
)

// queued is the email the stage commits for the order of payment
// paymentID by user.
func queued(user int64, paymentID string) *schemas.EmailSent {
	o := schemas.OrderCreated{OrderID: schemas.OrderID(paymentID), UserID: user, TotalCents: 1250 * user,
		Items: []schemas.OrderItem{{Name: "Lamp", UnitPriceCents: 1250, Quantity: int32(user)}}}
	to, subject := email.Confirmation(&o)
	return &schemas.EmailSent{EmailID: schemas.EmailID(o.OrderID), OrderID: o.OrderID, UserID: user, To: to, Subject: subject,
		Status: email.Queued, SentAt: time.Now().UTC().Truncate(time.Millisecond), Items: o.Items, TotalCents: o.TotalCents}
}

// outbox writes emails to email-sent in one transaction, as the stage does,
// and commits it or aborts it.
func outbox(t *testing.T, stack *infra.Embedded, cat *schemas.Catalog, commit bool, emails ...*schemas.EmailSent) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...), kgo.TransactionalID(fmt.Sprintf("test-outbox-%d", time.Now().UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, e := range emails {
		rec, err := schemas.Emails.Codec(cat).Record(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatal(err)
	}
}

type courier struct {
	cancel context.CancelFunc
	done   chan error
}

// run starts a delivery loop to smtpAddr; adjust may change its
// configuration. It stops when the test ends.
func run(t *testing.T, stack *infra.Embedded, cat *schemas.Catalog, smtpAddr string, adjust func(*email.CourierConfig)) *courier {
	t.Helper()
	cfg := email.CourierConfig{Brokers: stack.Brokers, InstanceID: "1", Catalog: cat, Logger: shoptest.Logger(t),
		SMTP: email.SMTP{Addr: smtpAddr, DialTimeout: time.Second}, MaxBackoff: 500 * time.Millisecond}
	if adjust != nil {
		adjust(&cfg)
	}
	c, err := email.NewCourier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &courier{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (c *courier) stop(t *testing.T) {
	c.cancel()
	select {
	case err := <-c.done:
		if err != nil && !errors.Is(err, email.ErrCrash) {
			t.Errorf("delivery loop: %v", err)
		}
		c.done <- err
	case <-time.After(30 * time.Second):
		t.Error("delivery loop did not stop")
	}
}

func startMailbox(t *testing.T, cfg mailbox.Config) *mailbox.Server {
	t.Helper()
	mb, err := mailbox.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mb.Close)
	return mb
}

// byMessageID counts the inbox's messages by Message-ID.
func byMessageID(mb *mailbox.Server) map[string]int {
	counts := map[string]int{}
	for _, m := range mb.Messages() {
		counts[m.MessageID]++
	}
	return counts
}

// committed is the delivery group's committed offset of each partition of
// email-sent.
func committed(adm *kadm.Client) (map[int32]int64, error) {
	offs, err := adm.FetchOffsets(context.Background(), schemas.DeliveryGroup)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) { out[o.Partition] = o.At })
	return out, nil
}

// ends is where each partition of email-sent ends, its last commit marker
// included.
func ends(t *testing.T, adm *kadm.Client) map[int32]int64 {
	t.Helper()
	listed, err := adm.ListEndOffsets(context.Background(), schemas.Emails.Name)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// drained waits until the delivery group has committed its way past every
// record of email-sent: whatever it was going to send, it has sent.
func drained(t *testing.T, stack *infra.Embedded, within time.Duration) {
	t.Helper()
	_, adm := shoptest.Clients(t, stack) // one client for every look
	shoptest.Eventually(t, within, 50*time.Millisecond, func() error {
		c, err := committed(adm)
		if err != nil {
			return err
		}
		e := ends(t, adm)
		for p, end := range e {
			// A group that read everything stays before the last
			// commit marker.
			if end > 0 && c[p] < end-1 {
				return fmt.Errorf("partition %d: committed %d, end %d", p, c[p], end)
			}
		}
		return nil
	})
}

// Only what committed is sent: an email of an aborted transaction never
// reaches the mail server, though it sits in the log before a committed
// one of the same user (the same partition), which arrives.
func TestAbortedTransactionSendsNothing(t *testing.T) {
	stack, cat := shoptest.Cluster(t)
	mb := startMailbox(t, mailbox.Config{})
	aborted, kept := queued(5, "aborted-payment"), queued(5, "committed-payment")
	outbox(t, stack, cat, false, aborted)
	outbox(t, stack, cat, true, kept)
	run(t, stack, cat, mb.SMTPAddr, nil)

	drained(t, stack, 30*time.Second)
	got := byMessageID(mb)
	if got[email.MessageID(kept.EmailID)] != 1 || len(got) != 1 {
		t.Fatalf("inbox by Message-ID = %v, want the committed email %s once and nothing else", got, email.MessageID(kept.EmailID))
	}
	// And the aborted record was really there, for read_uncommitted.
	recs, err := infra.ReadTopic(context.Background(), stack.Brokers, schemas.Emails.Name, kgo.ReadUncommitted(), 500*time.Millisecond)
	if err != nil || len(recs) != 2 {
		t.Fatalf("read_uncommitted sees %d records (%v), want the aborted one and the committed one", len(recs), err)
	}
}

// A loop that dies after the mail server took an email, before its offset
// committed, cannot prove the email was delivered: its restart sends it
// again, with the same Message-ID, and the inbox, counting by Message-ID,
// has one distinct message per email. What was committed is not resent.
func TestResendAfterCrash(t *testing.T) {
	stack, cat := shoptest.Cluster(t)
	mb := startMailbox(t, mailbox.Config{})
	first, second, third := queued(1, "pay-1"), queued(1, "pay-2"), queued(1, "pay-3")
	outbox(t, stack, cat, true, first)

	// The first loop delivers the first email, commits, then dies
	// right after the server took the second.
	crashed := run(t, stack, cat, mb.SMTPAddr, func(cfg *email.CourierConfig) {
		email.CrashAfterSend(cfg, func(e *schemas.EmailSent) bool { return e.EmailID == second.EmailID })
	})
	drained(t, stack, 30*time.Second)
	outbox(t, stack, cat, true, second)
	select {
	case err := <-crashed.done:
		if !errors.Is(err, email.ErrCrash) {
			t.Fatalf("the loop stopped with %v, want the crash", err)
		}
		crashed.done <- err
	case <-time.After(30 * time.Second):
		t.Fatal("the loop did not crash")
	}
	if got := byMessageID(mb); got[email.MessageID(second.EmailID)] != 1 {
		t.Fatalf("before the restart the inbox has %v, want the second email once", got)
	}

	// The restart (same instance) sends the second email again, then
	// the third; the first stays delivered once.
	outbox(t, stack, cat, true, third)
	run(t, stack, cat, mb.SMTPAddr, nil)
	drained(t, stack, 30*time.Second)
	got := byMessageID(mb)
	want := map[string]int{email.MessageID(first.EmailID): 1, email.MessageID(second.EmailID): 2, email.MessageID(third.EmailID): 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("inbox by Message-ID = %v, want %v: the unproven one twice, the rest once", got, want)
	}
	var raws [][]byte
	for _, m := range mb.Messages() {
		if m.MessageID == email.MessageID(second.EmailID) {
			raws = append(raws, m.Raw)
		}
	}
	if string(raws[0]) != string(raws[1]) {
		t.Fatalf("the resend differs from the first send:\n%s\n---\n%s", raws[0], raws[1])
	}
}

// A mail server that refuses an email for good (550) turns it into a dead
// letter of class smtp-rejected on dlq-order with the server's reply, its
// delivery record says rejected, and the next email goes through.
func TestRejectedEmailIsADeadLetter(t *testing.T) {
	stack, cat := shoptest.Cluster(t)
	mb := startMailbox(t, mailbox.Config{Reject: regexp.MustCompile(`^user_13@`)})
	bad, good := queued(13, "pay-13"), queued(14, "pay-14")
	outbox(t, stack, cat, true, bad, good)
	run(t, stack, cat, mb.SMTPAddr, nil)
	drained(t, stack, 30*time.Second)

	if got := byMessageID(mb); len(got) != 1 || got[email.MessageID(good.EmailID)] != 1 {
		t.Fatalf("inbox by Message-ID = %v, want the good email alone", got)
	}
	ctx := context.Background()
	dlq, err := infra.ReadTopic(ctx, stack.Brokers, schemas.OrderDLQ.Name, kgo.ReadCommitted(), 500*time.Millisecond)
	if err != nil || len(dlq) != 1 {
		t.Fatalf("dlq-order holds %d records (%v), want the rejected email's dead letter", len(dlq), err)
	}
	dl, err := schemas.OrderDLQ.Codec(cat).Decode(ctx, dlq[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if dl.ErrorClass != string(schemas.SMTPRejected) || dl.SourceTopic != schemas.Emails.Name || dl.Service != "email" ||
		!strings.Contains(dl.Error, "550 5.1.1 mailbox unavailable: user_13@example.com") {
		t.Fatalf("dead letter = class %q, source %q, service %q, error %q; want smtp-rejected from email-sent with the server's reply",
			dl.ErrorClass, dl.SourceTopic, dl.Service, dl.Error)
	}
	orig, err := schemas.Emails.Codec(cat).Decode(ctx, dl.OriginalValue)
	if err != nil || orig.EmailID != bad.EmailID {
		t.Fatalf("the dead letter keeps %v (%v), want the rejected email", orig, err)
	}
	states := deliveryStates(t, stack)
	if states[bad.EmailID].State != email.Rejected || !strings.HasPrefix(states[bad.EmailID].Reply, "550 5.1.1") || states[good.EmailID].State != email.Delivered {
		t.Fatalf("delivery records = %+v, want rejected with the reply, and delivered", states)
	}
}

// deliveryStates reads the delivery records, the latest per email.
func deliveryStates(t *testing.T, stack *infra.Embedded) map[string]email.Delivery {
	t.Helper()
	recs, err := infra.ReadTopic(context.Background(), stack.Brokers, schemas.EmailDeliveries.Name, kgo.ReadCommitted(), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]email.Delivery{}
	for _, r := range recs {
		var del email.Delivery
		if err := json.Unmarshal(r.Value, &del); err != nil {
			t.Fatal(err)
		}
		out[del.EmailID] = del
	}
	return out
}

// freeAddr is a local address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A mail server that is not there yet: the loop backs off and retries,
// the emails wait queued (the view counts them, the oldest's age grows),
// and once the server comes up every email arrives, once, in order per
// user, and the view shows them delivered.
func TestMailServerDownThenUp(t *testing.T) {
	stack, cat := shoptest.Cluster(t)
	addr := freeAddr(t)
	var emails []*schemas.EmailSent
	for i := range 30 {
		emails = append(emails, queued(int64(1+i%3), "pay-down-"+strconv.Itoa(i)))
	}
	outbox(t, stack, cat, true, emails...)
	run(t, stack, cat, addr, nil)

	deliveries := email.NewDeliveries(schemas.Emails.Codec(cat), 100, shoptest.Logger(t))
	f, err := view.Follow(stack.Brokers, shoptest.Logger(t), deliveries.Topics())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, deliveries.Apply) }()
	t.Cleanup(func() { cancel(); <-done })

	shoptest.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if u := deliveries.Undelivered(); u.Count != 30 || u.Oldest == nil {
			return fmt.Errorf("undelivered %+v, want 30 queued", u)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // down for a while: several retries
	if _, newest := deliveries.Newest(100); newest[0].Status != email.Queued {
		t.Fatalf("while the server is down /emails shows %q, want queued", newest[0].Status)
	}
	if u := deliveries.Undelivered(); u.Count != 30 || time.Since(*u.Oldest) < 3*time.Second {
		t.Fatalf("undelivered %+v after 3s down, want 30, the oldest waiting 3s or more", u)
	}

	mb := startMailbox(t, mailbox.Config{SMTPAddr: addr})
	up := time.Now()
	shoptest.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		if n := len(byMessageID(mb)); n != 30 {
			return fmt.Errorf("%d distinct messages in the inbox, want 30", n)
		}
		if u := deliveries.Undelivered(); u.Count != 0 || u.Delivered != 30 {
			return fmt.Errorf("undelivered %+v, want none and 30 delivered", u)
		}
		return nil
	})
	t.Logf("all 30 delivered %s after the server came up", time.Since(up).Round(time.Millisecond))
	for id, n := range byMessageID(mb) {
		if n != 1 {
			t.Errorf("%s arrived %d times", id, n)
		}
	}
	_, newest := deliveries.Newest(100)
	for _, e := range newest {
		if e.Status != email.Delivered || e.DeliveredAt == nil {
			t.Fatalf("email %s shows %q, want delivered", e.EmailID, e.Status)
		}
	}
	// In order per user: one user's emails share a partition.
	last := map[string]int{}
	for i, m := range mb.Messages() {
		user := m.To[0].Address
		for j, e := range emails {
			if email.MessageID(e.EmailID) == m.MessageID && e.To == user {
				if j < last[user] {
					t.Fatalf("message %d for %s is email %d, after email %d", i, user, j, last[user])
				}
				last[user] = j
			}
		}
	}
}

// outage is how long TestShopRidesOutAMailServerOutage keeps the mail
// server away: 3 s by default, SHOP_SMTP_OUTAGE=30s for the figure the
// README gives.
func outage(t *testing.T) time.Duration {
	if v := os.Getenv("SHOP_SMTP_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SHOP_SMTP_OUTAGE=%q: %v", v, err)
		}
		return d
	}
	return 3 * time.Second
}

// The whole shop with a mail server that is not there: payments become
// orders and emails all the same (the exactly-once stage does not wait for
// SMTP), /emails shows them queued and /metrics counts them with the age of
// the oldest; once the server comes up every confirmation arrives, each
// under its own Message-ID, and /emails shows them delivered.
func TestShopRidesOutAMailServerOutage(t *testing.T) {
	addr, down := freeAddr(t), outage(t)
	env := shoptest.Start(t, shop.Options{}, func(cfg *config.Config) { cfg.SMTPAddr = addr })
	const n = 20
	for i := range n {
		body := fmt.Sprintf(`{"user_id": %d, "cart": [{"name": "Lamp", "price": 12.50, "quantity": %d}]}`, 1+i%4, 1+i%3)
		resp, err := http.Post(env.Shop.URL("payment")+"/payment", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /payment: %d", resp.StatusCode)
		}
	}
	emails := func() (count int, states map[string]int, ids []string) {
		var answer struct {
			Count  int           `json:"count"`
			Emails []email.Email `json:"emails_sent"`
		}
		getJSON(t, env.Shop.URL("email")+"/emails", &answer)
		states = map[string]int{}
		for _, e := range answer.Emails {
			states[e.Status]++
			ids = append(ids, e.MessageID)
		}
		return answer.Count, states, ids
	}
	paidAt := time.Now()
	shoptest.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		if count, states, _ := emails(); count != n || states[email.Queued] != n {
			return fmt.Errorf("/emails: %d emails, %v; want %d queued", count, states, n)
		}
		return nil
	})
	time.Sleep(time.Until(paidAt.Add(down)))
	metric := func(name string) float64 {
		resp, err := http.Get(env.Shop.URL("email") + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		t.Fatalf("/metrics has no %s", name)
		return 0
	}
	if u, age := metric("shop_email_undelivered"), metric("shop_email_oldest_undelivered_age_seconds"); u != n || age < down.Seconds()*0.9 {
		t.Fatalf("after %s down: shop_email_undelivered %v, oldest age %vs; want %d and about %s", down, u, age, n, down)
	}
	if since := metric("shop_email_delivery_failing_since_seconds"); since == 0 {
		t.Fatal("shop_email_delivery_failing_since_seconds is 0 while nothing is delivered")
	}

	mb := startMailbox(t, mailbox.Config{SMTPAddr: addr})
	up := time.Now()
	var ids []string
	shoptest.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		var states map[string]int
		if _, states, ids = emails(); states[email.Delivered] != n {
			return fmt.Errorf("/emails: %v; want %d delivered", states, n)
		}
		return nil
	})
	got := byMessageID(mb)
	raw := 0
	for _, id := range ids {
		if got[id] == 0 {
			t.Errorf("%s is not in the inbox", id)
		}
		raw += got[id]
	}
	if len(got) != n {
		t.Errorf("%d distinct messages in the inbox, want %d", len(got), n)
	}
	if u := metric("shop_email_undelivered"); u != 0 {
		t.Errorf("shop_email_undelivered = %v once all were delivered", u)
	}
	t.Logf("mail server down %s: %d confirmations queued, all delivered %s after it came up; %d messages, %d distinct",
		down, n, time.Since(up).Round(time.Millisecond), raw, len(got))
}

func getJSON(t *testing.T, url string, into any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		t.Fatal(err)
	}
}
