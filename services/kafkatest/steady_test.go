//go:build kafka

package kafkatest

import (
	"bytes"
	"context"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/shoppers"
)

// TestSteadyLoadNeverStalls pays 1,000 times a second for 20 seconds and
// measures each payment until its email is committed. On a Kafka 4
// cluster, transactions version 2 once stood the pipeline still for
// seconds at a time, and the brokers refused the stages' produce batches
// with OutOfOrderSequence (see kafkaclient.Transactions): the test fails on
// any such refusal in the brokers' logs (which make kafka-up keeps in
// .run/kafka), or when no email is committed for 2 s while payments wait
// for theirs. The latencies are
// reported, not held to a figure: a busy machine is slower, not stalled
// (make bench measures them).
const stillFor = 2 * time.Second

func TestSteadyLoadNeverStalls(t *testing.T) {
	const rate, span = 1000, 20 * time.Second
	logs, _ := filepath.Glob(filepath.Join(root, ".run", "kafka", "node-*", "server.log"))
	if len(logs) == 0 {
		t.Fatalf("no broker logs in %s: this test reads the logs of make kafka-up", filepath.Join(root, ".run", "kafka"))
	}
	sizes := make(map[string]int64)
	for _, l := range logs {
		if fi, err := os.Stat(l); err == nil {
			sizes[l] = fi.Size()
		}
	}
	ctx := context.Background()
	emails := newEmailTimes(t, endOffsets(t, schemas.Emails.Name))
	startShop(t, []string{"order", "email"}, "steady", 0)

	cl, err := kgo.NewClient(adminOpts(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	r := rand.New(rand.NewPCG(12, 12))
	var (
		mu     sync.Mutex
		sentAt = make(map[string]time.Time) // order ID -> when its payment was acknowledged
	)
	start := time.Now()
	for i := 0; i < rate*int(span/time.Second); i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
			time.Sleep(d)
		}
		p := shoppers.Payment(r, 500)
		rec, err := schemas.Payments.Codec(catalog).Record(&p)
		if err != nil {
			t.Fatal(err)
		}
		orderID := schemas.OrderID(p.PaymentID)
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("payment not written: %v", err)
				return
			}
			mu.Lock()
			sentAt[orderID] = time.Now()
			mu.Unlock()
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	ids := make([]string, 0, len(sentAt))
	for id := range sentAt {
		ids = append(ids, id)
	}
	mu.Unlock()
	seen := emails.wait(t, ids, time.Minute)

	var lat []time.Duration
	for id, at := range sentAt {
		if at.Sub(start) < 2*time.Second { // connections open, batches settle
			continue
		}
		lat = append(lat, seen[id].Sub(at))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("%d payments at %d/s: payment to committed email p50 %v, p99 %v, max %v", len(sentAt), rate, p50.Round(time.Millisecond),
		p99.Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	gap, at := longestGap(seen)
	t.Logf("the longest time without a committed email: %v", gap.Round(time.Millisecond))
	if gap > stillFor {
		t.Errorf("no email committed for %v, %v into the run, while payments waited: the pipeline stood still", gap.Round(time.Millisecond), at.Sub(start).Round(time.Millisecond))
	}
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		b = b[min(sizes[l], int64(len(b))):]
		if n := bytes.Count(b, []byte("OutOfOrderSequence")); n > 0 {
			i := bytes.Index(b, []byte("OutOfOrderSequence"))
			t.Errorf("%s: %d produce requests refused with OutOfOrderSequence during the run, the first: %s", l, n,
				b[max(0, i-200):min(len(b), i+300)])
		}
	}
}

// longestGap is the longest time between two committed emails, and when
// it began. Payments come all the time until the last email, so some
// payment waits through every such gap.
func longestGap(seen map[string]time.Time) (time.Duration, time.Time) {
	commits := slices.SortedFunc(maps.Values(seen), time.Time.Compare)
	var gap time.Duration
	var at time.Time
	for i := 1; i < len(commits); i++ {
		if d := commits[i].Sub(commits[i-1]); d > gap {
			gap, at = d, commits[i-1]
		}
	}
	return gap, at
}

// emailTimes notes when each email becomes readable with read_committed.
type emailTimes struct {
	mu   sync.Mutex
	seen map[string]time.Time // order ID -> committed
}

func newEmailTimes(t *testing.T, from Offsets) *emailTimes {
	t.Helper()
	cl, err := kgo.NewClient(adminOpts(kgo.ConsumePartitions(from.consume()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(50*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	e := &emailTimes{seen: make(map[string]time.Time)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			now := time.Now()
			for _, r := range fetches.Records() {
				if m, err := schemas.Emails.Codec(catalog).Decode(ctx, r.Value); err == nil {
					e.mu.Lock()
					e.seen[m.OrderID] = now
					e.mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return e
}

// wait returns once every order of ids has its email, with the times.
func (e *emailTimes) wait(t *testing.T, ids []string, timeout time.Duration) map[string]time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		e.mu.Lock()
		missing := 0
		for _, id := range ids {
			if _, ok := e.seen[id]; !ok {
				missing++
			}
		}
		if missing == 0 {
			defer e.mu.Unlock()
			return maps.Clone(e.seen)
		}
		e.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d emails missing after %v", missing, len(ids), timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
