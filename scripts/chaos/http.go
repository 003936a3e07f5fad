package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/pace"
	"github.com/blackfriday-kafka/shop/services/payment"
)

// httpSender pays through POST /payment, as a shop's clients do: each
// payment to a random payment instance, with an Idempotency-Key (none in
// the control), and tried again on a timeout, a refused or cut connection,
// a 409 (the key still in flight) or a 5xx, until one answer is 200. The
// first item of each cart is named after the payment (its marker), so the
// orders can be counted per payment whatever payment ID they carry.
type httpSender struct {
	acceptedSet // marker -> total cents, once a 200 came
	urls        []string
	keys        bool
	posts       int // posts of each payment at once; 1: one in five twice
	client      *http.Client

	mu      sync.Mutex
	answers map[string]int // what the tries got: 200, 200 replayed, 409, timeout...
	tries   int
}

// attemptTimeout is short on purpose: a client that gives up while its
// payment is still on its way, and tries again, is what idempotency is for.
const attemptTimeout = 400 * time.Millisecond

func newHTTPSender(urls []string, keys bool, posts int) *httpSender {
	return &httpSender{acceptedSet: acceptedSet{accepted: make(map[string]int64)}, urls: urls, keys: keys, posts: posts, client: &http.Client{Timeout: attemptTimeout},
		answers: make(map[string]int)}
}

// send pays n times evenly over d, each payment on its own until accepted;
// it returns once every payment was, or on the first answer that says the
// request itself is wrong (400, 422).
func (s *httpSender) send(ctx context.Context, n int, d time.Duration, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	start := time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		if pace.Wait(ctx, start, i, n, d) != nil {
			wg.Wait()
			return context.Cause(ctx)
		}
		marker := fmt.Sprintf("chaos-%d-%d", seed, i)
		body, total := cart(rng, marker)
		tryRng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		wg.Go(func() {
			if err := s.pay(ctx, marker, body, total, tryRng); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// cart is a payment of a user as POST /payment takes it, its first item
// named marker, and its total in cents.
func cart(rng *rand.Rand, marker string) ([]byte, int64) {
	items := []payment.Item{{Name: marker, Price: schemas.Euros(100 + rng.Int64N(99_900)), Quantity: 1 + rng.Int32N(3)}}
	if rng.IntN(2) == 0 {
		items = append(items, payment.Item{Name: "Kindle", Price: 8999, Quantity: 1})
	}
	var total int64
	for _, it := range items {
		total += int64(it.Price) * int64(it.Quantity)
	}
	b, _ := json.Marshal(struct {
		UserID int64          `json:"user_id"`
		Cart   []payment.Item `json:"cart"`
	}{1 + rng.Int64N(500), items})
	return b, total
}

// doubleClick is the share of payments posted twice at once, to two
// instances: the click that went twice, or a client that hedges.
const doubleClick = 5 // one in five

// pay posts body until a 200, backing off between tries.
func (s *httpSender) pay(ctx context.Context, marker string, body []byte, total int64, rng *rand.Rand) error {
	giveUp := time.Now().Add(2 * time.Minute)
	first := rng.IntN(len(s.urls))
	extra := s.posts - 1
	if s.posts == 1 && rng.IntN(doubleClick) == 0 {
		extra = 1
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 1; i <= extra; i++ {
		url := s.urls[(first+i)%len(s.urls)]
		wg.Go(func() { s.record(ctx, marker, total, url, body) })
	}
	for try := 0; ; try++ {
		url := s.urls[first]
		if try > 0 {
			url = s.urls[rng.IntN(len(s.urls))]
		}
		answer, status := s.record(ctx, marker, total, url, body)
		switch {
		case status == http.StatusOK:
			return nil
		case status == http.StatusBadRequest || status == http.StatusUnprocessableEntity:
			return fmt.Errorf("payment %s: %s", marker, answer)
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(giveUp):
			return fmt.Errorf("payment %s: no 200 in 2 minutes (last: %s)", marker, answer)
		}
		backoff := time.Duration(min(1000, 50<<min(try, 5))) * time.Millisecond
		time.Sleep(backoff/2 + time.Duration(rng.Int64N(int64(backoff/2)+1)))
	}
}

// record tries once and counts the answer; a 200 accepts the payment.
func (s *httpSender) record(ctx context.Context, marker string, total int64, url string, body []byte) (string, int) {
	answer, status := s.try(ctx, url, marker, body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries++
	s.answers[answer]++
	if status == http.StatusOK {
		s.add(marker, total)
	}
	return answer, status
}

// try posts once and names the answer.
func (s *httpSender) try(ctx context.Context, url, key string, body []byte) (string, int) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/payment", bytes.NewReader(body))
	if err != nil {
		return err.Error(), 0
	}
	req.Header.Set("Content-Type", "application/json")
	if s.keys {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return "timeout", 0
		}
		return "no connection", 0
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	answer := fmt.Sprint(resp.StatusCode)
	if resp.Header.Get("Idempotent-Replayed") == "true" {
		answer += " replayed"
	}
	if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity {
		answer += " " + string(msg)
	}
	return answer, resp.StatusCode
}

// summary says what the tries got.
func (s *httpSender) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%d tries for %d payments: %v", s.tries, s.count(), s.answers)
}

func (s *httpSender) close() { s.client.CloseIdleConnections() }
