//go:build kafka

package kafkatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// The cluster under test, set up once by TestMain.
var (
	brokers     []string
	registryURL string
	catalog     *schemas.Catalog
	root        string // the repository, where scripts/ and .run/ are
	binDir      string // a temporary folder for the shop binary
	// tools is the tests' own configuration, as the admin: SECURE=1 and
	// KAFKA_SASL_* apply, as they do to the operators' tools.
	tools config.Config
)

// adminOpts are the options of a test's own client: the brokers, the
// admin's credentials in secure mode, then opts.
func adminOpts(opts ...kgo.Opt) []kgo.Opt { return append(tools.Kafka(), opts...) }

func TestMain(m *testing.M) {
	list := os.Getenv("KAFKA_BROKERS")
	if list == "" {
		fmt.Println("kafkatest: KAFKA_BROKERS is not set, so there is no real cluster to test: skipped (make kafka-up, then make test-kafka)")
		os.Exit(0)
	}
	var err error
	if tools, err = config.FromEnv(os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "kafkatest:", err)
		os.Exit(1)
	}
	brokers, registryURL = tools.Brokers, tools.RegistryURL
	if root, err = filepath.Abs("../.."); err != nil {
		fmt.Fprintln(os.Stderr, "kafkatest:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	err = setup(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafkatest:", err)
		os.Exit(1)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// setup checks that a 3-broker cluster answers at KAFKA_BROKERS and that
// the topics and schemas are there.
func setup(ctx context.Context) error {
	cl, err := kgo.NewClient(adminOpts()...)
	if err != nil {
		return err
	}
	defer cl.Close()
	meta, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		return fmt.Errorf("no Kafka cluster answers at KAFKA_BROKERS=%s (start one with make kafka-up): %w", strings.Join(brokers, ","), err)
	}
	if len(meta.Brokers) < 3 {
		return fmt.Errorf("the suite needs 3 brokers, the cluster at %s has %d", strings.Join(brokers, ","), len(meta.Brokers))
	}
	if err := infra.CreateTopics(ctx, brokers, tools.Connect()...); err != nil {
		return err
	}
	if err := infra.RegisterSchemas(ctx, registryURL, tools.Registry()...); err != nil {
		return fmt.Errorf("schema registry at SCHEMA_REGISTRY_URL=%s: %w", registryURL, err)
	}
	reg, err := schemas.NewRegistryClient(registryURL, tools.Registry()...)
	if err != nil {
		return err
	}
	catalog, err = schemas.Resolved(ctx, reg)
	return err
}

// admin is a Kafka admin client closed at the end of the test.
func admin(t testing.TB) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(adminOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// Offsets are positions per topic and partition.
type Offsets map[string]map[int32]int64

// endOffsets are where the topics end now: a test judges only what comes
// after, so earlier runs' data on the topics is never confused with its own.
func endOffsets(t testing.TB, topics ...string) Offsets {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := admin(t).ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("end offsets of %v: %v", topics, err)
	}
	out := make(Offsets)
	ends.Each(func(o kadm.ListedOffset) {
		if out[o.Topic] == nil {
			out[o.Topic] = make(map[int32]int64)
		}
		out[o.Topic][o.Partition] = o.Offset
	})
	return out
}

// streamStart is where a test that streams payments at the order service
// starts: where payment-successful, order-created and email-sent end now
// (from), where the two outputs do (outputs), and a watch of the outputs
// from there.
func streamStart(t testing.TB) (from, outputs Offsets, w *watch) {
	t.Helper()
	from = endOffsets(t, schemas.Payments.Name, schemas.Orders.Name, schemas.Emails.Name)
	outputs = Offsets{schemas.Orders.Name: from[schemas.Orders.Name], schemas.Emails.Name: from[schemas.Emails.Name]}
	return from, outputs, newWatch(t, outputs)
}

func (o Offsets) consume() map[string]map[int32]kgo.Offset {
	out := make(map[string]map[int32]kgo.Offset)
	for topic, parts := range o {
		out[topic] = make(map[int32]kgo.Offset)
		for p, off := range parts {
			out[topic][p] = kgo.NewOffset().At(off)
		}
	}
	return out
}

// internalTopics are Kafka's own topics that exactly-once depends on.
var internalTopics = []string{"__consumer_offsets", "__transaction_state"}

// isrShort lists the partitions of the shop's topics and of Kafka's internal
// topics whose ISR is not every replica, or that have no leader.
func isrShort(ctx context.Context, adm *kadm.Client) ([]string, int, error) {
	details, err := adm.ListTopics(ctx, append(append([]string{}, schemas.TopicNames()...), internalTopics...)...)
	if err != nil {
		return nil, 0, err
	}
	var short []string
	n := 0
	for _, d := range details.Sorted() {
		if d.Err != nil {
			short = append(short, fmt.Sprintf("%s: %v", d.Topic, d.Err))
			continue
		}
		for _, p := range d.Partitions.Sorted() {
			n++
			if p.Err != nil || p.Leader < 0 || len(p.ISR) != len(p.Replicas) || len(p.Replicas) != 3 {
				short = append(short, fmt.Sprintf("%s/%d leader=%d isr=%v replicas=%v", d.Topic, p.Partition, p.Leader, p.ISR, p.Replicas))
			}
		}
	}
	return short, n, nil
}

// waitISRFull waits until every partition of the shop's topics and of
// __consumer_offsets and __transaction_state has three replicas in sync.
func waitISRFull(t testing.TB, timeout time.Duration) {
	t.Helper()
	adm := admin(t)
	var last string
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		short, n, err := isrShort(ctx, adm)
		cancel()
		switch {
		case err != nil:
			last = err.Error()
		case len(short) == 0:
			t.Logf("ISR full: %d partitions, 3 replicas in sync each", n)
			return
		default:
			last = strings.Join(short, "; ")
		}
		if time.Now().After(deadline) {
			t.Fatalf("ISR not full after %s: %s", timeout, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// eventually retries check every 200 ms until it returns nil or timeout
// passes.
func eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	shoptest.Eventually(t, timeout, 200*time.Millisecond, check)
}

// startShop starts services in this process against the real cluster, as
// instance, on free ports, and stops them when the test ends (if the test
// has not stopped them itself).
func startShop(t testing.TB, names []string, instance string, delay time.Duration) *shop.Shop {
	t.Helper()
	cfg := config.Config{
		Brokers: brokers, RegistryURL: registryURL, Addr: "127.0.0.1:0", Secure: tools.Secure,
		// The email service delivers, as in production, to the Mailpit of
		// make kafka-up: a test that left its emails undelivered would
		// leave them to the next one's delivery loop.
		SMTPAddr:   tools.SMTPAddr,
		InstanceID: instance, ProcessingDelay: delay, Logger: shoptest.Logger(t),
	}
	s, err := shop.Start(context.Background(), cfg, catalog, shop.Options{Services: names})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			if err := s.Stop(); err != nil {
				t.Errorf("%v instance %s stopped with: %v", names, instance, err)
			}
		})
	}
	t.Cleanup(stop)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// newPayment is a valid payment of one to three items.
func newPayment(rng *rand.Rand) schemas.PaymentSucceeded {
	p := schemas.PaymentSucceeded{
		PaymentID: uuid.NewString(),
		UserID:    1 + rng.Int64N(1000),
		PaidAt:    time.Now().UTC().Truncate(time.Millisecond),
	}
	for i := range 1 + rng.IntN(3) {
		p.Cart = append(p.Cart, schemas.CartItem{
			Name:           fmt.Sprintf("Deal %d", i+1),
			UnitPriceCents: 99 + rng.Int64N(200_000),
			Quantity:       1 + rng.Int32N(3),
		})
	}
	p.TotalCents = schemas.CartTotal(p.Cart)
	return p
}

// Paid are the payments Kafka acknowledged: payment ID -> total cents.
type Paid struct {
	mu  sync.Mutex
	ids map[string]int64
}

func newPaid() *Paid { return &Paid{ids: make(map[string]int64)} }

func (p *Paid) add(id string, cents int64) {
	p.mu.Lock()
	p.ids[id] = cents
	p.mu.Unlock()
}

func (p *Paid) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}

func (p *Paid) snapshot() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.ids))
	for k, v := range p.ids {
		out[k] = v
	}
	return out
}

// produceStream writes n payments straight to payment-successful over d
// with an idempotent producer (acks=all), and records each acknowledged one
// in paid. It returns when every record is acknowledged.
func produceStream(ctx context.Context, t testing.TB, paid *Paid, n int, d time.Duration, seed uint64) error {
	cl, err := kgo.NewClient(adminOpts(kgo.RecordDeliveryTimeout(2*time.Minute), kgo.ProducerLinger(0))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	rng := rand.New(rand.NewPCG(seed, seed^0xfeed))
	start := time.Now()
	var mu sync.Mutex
	var failed error
	for i := range n {
		if wait := time.Until(start.Add(d * time.Duration(i) / time.Duration(n))); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		p := newPayment(rng)
		r, err := schemas.Payments.Codec(catalog).Record(&p)
		if err != nil {
			return err
		}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
				return
			}
			paid.add(p.PaymentID, p.TotalCents)
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	return failed
}

// postPayment pays over HTTP, as a client of the shop does. It returns the
// HTTP status and, on 200, the payment.
func postPayment(ctx context.Context, paymentURL string, p schemas.PaymentSucceeded) (int, string, int64, error) {
	type item struct {
		Name     string        `json:"name"`
		Price    schemas.Euros `json:"price"`
		Quantity int32         `json:"quantity"`
	}
	body := struct {
		UserID int64  `json:"user_id"`
		Cart   []item `json:"cart"`
	}{UserID: p.UserID}
	for _, it := range p.Cart {
		body.Cart = append(body.Cart, item{it.Name, schemas.Euros(it.UnitPriceCents), it.Quantity})
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, paymentURL+"/payment", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", 0, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, "", 0, fmt.Errorf("POST /payment: %d %s", resp.StatusCode, raw)
	}
	var answer struct {
		PaymentID string      `json:"payment_id"`
		Total     json.Number `json:"total"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&answer); err != nil {
		return resp.StatusCode, "", 0, fmt.Errorf("POST /payment answered %s: %w", raw, err)
	}
	total, err := schemas.ParseEuros(answer.Total.String())
	if err != nil {
		return resp.StatusCode, "", 0, err
	}
	return resp.StatusCode, answer.PaymentID, int64(total), nil
}

// getJSON reads url into v.
func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	return dec.Decode(v)
}

// watch follows order-created and email-sent with read_committed from a
// test's start offsets, to see the pipeline drain while the test goes on.
type watch struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	orders  map[string]string // payment ID -> order ID
	emailed map[string]bool   // order ID -> has an email
}

func newWatch(t testing.TB, from Offsets) *watch {
	t.Helper()
	cl, err := kgo.NewClient(adminOpts(kgo.ConsumePartitions(from.consume()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{cl: cl, cancel: cancel, done: make(chan struct{}), orders: map[string]string{}, emailed: map[string]bool{}}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			for _, r := range cl.PollFetches(ctx).Records() {
				w.see(ctx, r)
			}
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *watch) see(ctx context.Context, r *kgo.Record) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch r.Topic {
	case schemas.Orders.Name:
		if o, err := schemas.Orders.Codec(catalog).Decode(ctx, r.Value); err == nil {
			w.orders[o.PaymentID] = o.OrderID
		}
	case schemas.Emails.Name:
		if e, err := schemas.Emails.Codec(catalog).Decode(ctx, r.Value); err == nil {
			w.emailed[e.OrderID] = true
		}
	}
}

// missing counts the payments without an order, and the orders without an
// email, among paid.
func (w *watch) missing(paid map[string]int64) (orders, emails int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range paid {
		o, ok := w.orders[id]
		switch {
		case !ok:
			orders++
			emails++
		case !w.emailed[o]:
			emails++
		}
	}
	return orders, emails
}

// waitDrained waits until every payment in paid has its order and email.
func (w *watch) waitDrained(t testing.TB, paid map[string]int64, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		if o, e := w.missing(paid); o+e > 0 {
			return fmt.Errorf("of %d payments, %d have no order yet and %d no email", len(paid), o, e)
		}
		return nil
	})
}

func (w *watch) close() {
	w.cancel()
	<-w.done
	w.cl.Close()
}

// readFrom reads topics from offsets with the given isolation until nothing
// new comes for idle.
func readFrom(t testing.TB, from Offsets, iso kgo.IsolationLevel, idle time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(adminOpts(kgo.ConsumePartitions(from.consume()), kgo.FetchIsolationLevel(iso))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for {
		ctx, cancel := context.WithTimeout(context.Background(), idle)
		fetches := cl.PollFetches(ctx)
		cancel()
		got := fetches.Records()
		if len(got) == 0 {
			return recs
		}
		recs = append(recs, got...)
	}
}

// Tally is what a test's outputs hold for the payments it sent.
type Tally struct {
	Orders, Emails int // of the test's payments
	Others         int // records after the start offsets of no payment the test sent
	Aborted        int // records written then aborted, hidden from read_committed
}

// checkExactlyOnce reads order-created and email-sent from the test's start
// offsets with read_committed and holds them to exactly-once for paid: one
// order per payment, with the derived order ID and the payment's total, and
// one email per order, with the derived email ID. Records of payments the
// test did not send are counted, not judged.
func checkExactlyOnce(t testing.TB, from Offsets, paid map[string]int64) Tally {
	t.Helper()
	var tally Tally
	ordersOf := make(map[string]int)
	emailsOf := make(map[string]int)
	ours := make(map[string]bool) // order IDs of paid
	committed := readFrom(t, from, kgo.ReadCommitted(), 3*time.Second)
	for r, o := range decoded(t, committed, schemas.Orders) {
		cents, ok := paid[o.PaymentID]
		if !ok {
			tally.Others++
			continue
		}
		tally.Orders++
		ordersOf[o.PaymentID]++
		ours[o.OrderID] = true
		if o.OrderID != schemas.OrderID(o.PaymentID) || o.TotalCents != cents || string(r.Key) != fmt.Sprint(o.UserID) {
			t.Errorf("order %s of payment %s: total %d key %q, want order ID %s, total %d, key %d",
				o.OrderID, o.PaymentID, o.TotalCents, r.Key, schemas.OrderID(o.PaymentID), cents, o.UserID)
		}
	}
	for _, e := range decoded(t, committed, schemas.Emails) {
		if !ours[e.OrderID] {
			tally.Others++
			continue
		}
		tally.Emails++
		emailsOf[e.OrderID]++
		if e.EmailID != schemas.EmailID(e.OrderID) {
			t.Errorf("email %s of order %s, want email ID %s", e.EmailID, e.OrderID, schemas.EmailID(e.OrderID))
		}
	}
	var lost, doubled []string
	for _, one := range []struct {
		each          iter.Seq[string] // IDs that must be counted once
		count         map[string]int
		lost, doubled string // how to say an ID is counted never, or n times
	}{
		{maps.Keys(paid), ordersOf, "payment %s", "payment %s has %d orders"},
		{maps.Keys(ours), emailsOf, "email of order %s", "order %s has %d emails"},
	} {
		for id := range one.each {
			switch n := one.count[id]; {
			case n == 0:
				lost = append(lost, fmt.Sprintf(one.lost, id))
			case n > 1:
				doubled = append(doubled, fmt.Sprintf(one.doubled, id, n))
			}
		}
	}
	if len(lost) > 0 {
		t.Errorf("lost (%d): %s", len(lost), strings.Join(first(lost, 10), ", "))
	}
	if len(doubled) > 0 {
		t.Errorf("duplicates (%d): %s", len(doubled), strings.Join(first(doubled, 10), ", "))
	}
	uncommitted := readFrom(t, from, kgo.ReadUncommitted(), 2*time.Second)
	tally.Aborted = len(uncommitted) - len(committed)
	t.Logf("read_committed from the test's start: %d payments, %d orders, %d emails (one each: %v); %d records of other payments; %d aborted records hidden",
		len(paid), tally.Orders, tally.Emails, len(lost)+len(doubled) == 0, tally.Others, tally.Aborted)
	return tally
}

// decoded are the records of topic among recs, with their values; a
// record that does not decode is an error of the test.
func decoded[V any](t testing.TB, recs []*kgo.Record, topic schemas.Topic[V]) iter.Seq2[*kgo.Record, *V] {
	return func(yield func(*kgo.Record, *V) bool) {
		t.Helper()
		for _, r := range recs {
			if r.Topic != topic.Name {
				continue
			}
			v, err := topic.Codec(catalog).Decode(context.Background(), r.Value)
			if err != nil {
				t.Errorf("%s %d/%d: %v", topic.Name, r.Partition, r.Offset, err)
				continue
			}
			if !yield(r, v) {
				return
			}
		}
	}
}

func first(s []string, n int) []string { return s[:min(len(s), n)] }

// shopBinary builds the shop binary once, for tests that need separate
// processes.
var shopBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "kafkatest-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "shop")
	cmd := exec.Command("go", "build", "-o", bin, "./services/cmd/shop")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build shop: %v\n%s", err, out)
	}
	return bin, nil
})

// process is a service run as its own OS process.
type process struct {
	cmd    *exec.Cmd
	stderr *shoptest.SyncBuffer
	exited chan struct{}
	err    error
}

// startProcess runs `shop service` against the cluster with extra env. Each
// process keeps its state on disk in a directory of its own, as on a
// machine of its own: two processes with one INSTANCE_ID (a newer one
// fencing an older) would otherwise share it, and the second is refused.
func startProcess(t testing.TB, service string, env ...string) *process {
	t.Helper()
	bin, err := shopBinary()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{stderr: &shoptest.SyncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, service)
	p.cmd.Env = append(os.Environ(), append([]string{
		"KAFKA_BROKERS=" + strings.Join(brokers, ","), "SCHEMA_REGISTRY_URL=" + registryURL,
		"PORT=0", "LOG_LEVEL=warn", "LOG_FORMAT=text", "STATE_DIR=" + t.TempDir(),
	}, env...)...)
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.exited
		}
	})
	return p
}

// stop sends SIGTERM and waits up to timeout for the process to exit.
func (p *process) stop(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("still running %s after SIGTERM", timeout)
	}
}

// groupMembers is how many members the consumer group of service has.
func groupMembers(ctx context.Context, adm *kadm.Client, service string) (int, string, error) {
	groups, err := adm.DescribeGroups(ctx, schemas.Group(service))
	if err != nil {
		return 0, "", err
	}
	g, ok := groups[schemas.Group(service)]
	if !ok {
		return 0, "", fmt.Errorf("group %s not described", schemas.Group(service))
	}
	if g.Err != nil {
		return 0, "", g.Err
	}
	return len(g.Members), g.State, nil
}
