package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/latency"
	"github.com/blackfriday-kafka/shop/scripts/progress"
)

// Options shape a simulation.
type Options struct {
	URL     string        // the payment service, such as http://localhost:8000
	N       int           // requests in all
	C       int           // requests in flight at once
	Timeout time.Duration // bound on the whole run; requests not done by then fail
	Invalid float64       // share of deliberately invalid payments (expect HTTP 400)
	Users   int           // user IDs are drawn from 1..Users
	// Retries posts each payment that many more times with its
	// Idempotency-Key, the first retry at the same time as the first try
	// (a client that timed out and retried at once), the others after it.
	Retries int

	Progress time.Duration // how often to print progress; 0: never
}

// Report is what a simulation saw.
type Report struct {
	N         int
	OK        int
	Failures  map[string]int  // failed requests by cause
	Elapsed   time.Duration   // from the first request to the last answer
	Latencies []time.Duration // of accepted payments, sorted
	// With retries: the answers to every try, by kind (accepted, replayed,
	// or the refusal, such as HTTP 409 Conflict).
	Answers map[string]int
}

// Throughput is accepted payments per second.
func (r Report) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// Percentile is the latency below which q of the accepted payments were
// answered (nearest rank), such as Percentile(0.99).
func (r Report) Percentile(q float64) time.Duration {
	return latency.Sorted(r.Latencies, 100*q)
}

// String is the report: failures by cause, then one summary line.
func (r Report) String() string {
	var b strings.Builder
	causes := make([]string, 0, len(r.Failures))
	for c := range r.Failures {
		causes = append(causes, c)
	}
	sort.Slice(causes, func(i, j int) bool { return r.Failures[causes[i]] > r.Failures[causes[j]] })
	for _, c := range causes {
		fmt.Fprintf(&b, "  failed: %d × %s\n", r.Failures[c], c)
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
	if len(r.Answers) > 0 {
		kinds := slices.Sorted(maps.Keys(r.Answers))
		fmt.Fprintf(&b, "  tries:")
		for _, k := range kinds {
			fmt.Fprintf(&b, " %s=%d", k, r.Answers[k])
		}
		fmt.Fprintln(&b)
	}
	fmt.Fprintf(&b, "simulate: %d/%d payments accepted, %d failed, in %s: %.1f payments/s; latency p50=%s p95=%s p99=%s",
		r.OK, r.N, r.N-r.OK, r.Elapsed.Round(time.Millisecond), r.Throughput(),
		ms(r.Percentile(0.50)), ms(r.Percentile(0.95)), ms(r.Percentile(0.99)))
	return b.String()
}

// CheckLoopback refuses a target off this machine: the simulation is a
// load test of the local shop, not a tool to load someone else's server.
func CheckLoopback(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return fmt.Errorf("%q is not an http:// URL", raw)
	}
	host := u.Hostname()
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else if ips, err = net.DefaultResolver.LookupIP(ctx, "ip", host); err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s is %s, not this machine: simulate only loads a shop on loopback", host, ip)
		}
	}
	return nil
}

// outcome is one request's fate.
type outcome struct {
	ok       bool
	replayed bool // the answer of an earlier try (Idempotent-Replayed)
	cause    string
	latency  time.Duration
}

// Simulate posts opts.N payments to opts.URL/payment, opts.C at a time,
// and reports how the shop answered. It never runs past opts.Timeout.
func Simulate(ctx context.Context, client *http.Client, opts Options, out io.Writer) (Report, error) {
	if opts.N <= 0 || opts.C <= 0 {
		return Report{}, fmt.Errorf("-n and -c must be positive, are %d and %d", opts.N, opts.C)
	}
	if err := CheckLoopback(ctx, opts.URL); err != nil {
		return Report{}, err
	}
	if opts.Users <= 0 {
		opts.Users = 1000
	}
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	endpoint := strings.TrimSuffix(opts.URL, "/") + "/payment"

	var (
		next     atomic.Int64 // requests handed out
		done, ok atomic.Int64
		results  = make([]outcome, opts.N)
		tries    = make([][]outcome, opts.N)
		wg       sync.WaitGroup
		start    = time.Now()
		run      = strconv.FormatInt(start.UnixNano(), 36) // keys of this run only
	)
	stop := progress.Every(opts.Progress, func() {
		d, k := done.Load(), ok.Load()
		fmt.Fprintf(out, "simulate: %d/%d answered, %d accepted, %d failed, %.0f payments/s\n",
			d, opts.N, k, d-k, float64(k)/time.Since(start).Seconds())
	})
	defer stop()
	for w := range min(opts.C, opts.N) {
		rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(w)))
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= opts.N {
					return
				}
				if ctx.Err() != nil {
					results[i] = outcome{cause: "not sent: time limit or interrupted"}
					done.Add(1)
					continue
				}
				b := body(rng, opts)
				if opts.Retries == 0 {
					results[i] = post(ctx, client, endpoint, b, "")
				} else {
					tries[i] = retry(ctx, client, endpoint, b, "simulate-"+run+"-"+strconv.Itoa(i), opts.Retries)
					results[i] = first(tries[i])
				}
				if results[i].ok {
					ok.Add(1)
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()

	rep := Report{N: opts.N, Failures: map[string]int{}, Elapsed: time.Since(start)}
	if opts.Retries > 0 {
		rep.Answers = map[string]int{}
		for _, ts := range tries {
			for _, o := range ts {
				switch {
				case o.replayed:
					rep.Answers["replayed"]++
				case o.ok:
					rep.Answers["accepted"]++
				default:
					rep.Answers[o.cause]++
				}
			}
		}
	}
	for _, o := range results {
		if o.ok {
			rep.OK++
			rep.Latencies = append(rep.Latencies, o.latency)
		} else {
			rep.Failures[o.cause]++
		}
	}
	slices.Sort(rep.Latencies)
	return rep, nil
}

// payment is a cart line as POST /payment takes it: price in euros.
type payment struct {
	UserID int64  `json:"user_id"`
	Cart   []item `json:"cart"`
}

type item struct {
	Name     string        `json:"name"`
	Price    schemas.Euros `json:"price"`
	Quantity int32         `json:"quantity"`
}

var products = []item{
	{"MacBook Pro", 199900, 1}, {"iPhone 15", 99900, 1}, {"AirPods Pro", 27900, 1},
	{"PlayStation 5", 49999, 1}, {"Nintendo Switch", 29999, 1}, {"Kindle", 8999, 1},
	{"Espresso machine", 12950, 1}, {"Smart watch", 24900, 1},
}

// body is a shopper's payment; a share opts.Invalid of them break a rule
// the payment service must refuse with 400.
func body(r *rand.Rand, opts Options) []byte {
	p := payment{UserID: 1 + r.Int64N(int64(opts.Users))}
	for range 1 + r.IntN(3) {
		it := products[r.IntN(len(products))]
		it.Quantity = int32(1 + r.IntN(2))
		p.Cart = append(p.Cart, it)
	}
	if r.Float64() < opts.Invalid {
		p.Cart[0].Quantity = 0
	}
	b, _ := json.Marshal(p)
	return b
}

// retry posts body with key 1+retries times: the first two tries at once,
// the others one after the other.
func retry(ctx context.Context, client *http.Client, endpoint string, body []byte, key string, retries int) []outcome {
	out := make([]outcome, 1+retries)
	var wg sync.WaitGroup
	wg.Go(func() { out[0] = post(ctx, client, endpoint, body, key) })
	out[1] = post(ctx, client, endpoint, body, key)
	wg.Wait()
	for i := 2; i < len(out); i++ {
		out[i] = post(ctx, client, endpoint, body, key)
	}
	return out
}

// first is the outcome of a payment tried several times: accepted if any
// try was, with the latency of the first that was.
func first(tries []outcome) outcome {
	for _, o := range tries {
		if o.ok {
			return o
		}
	}
	return tries[0]
}

func post(ctx context.Context, client *http.Client, endpoint string, body []byte, key string) outcome {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return outcome{cause: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return outcome{cause: transportCause(ctx, err)}
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode == http.StatusOK {
		return outcome{ok: true, replayed: resp.Header.Get("Idempotent-Replayed") == "true", latency: time.Since(start)}
	}
	cause := fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	var e struct {
		Field string `json:"field"`
	}
	if json.Unmarshal(answer, &e) == nil && e.Field != "" {
		cause += " (" + e.Field + ")"
	}
	return outcome{cause: cause}
}

func transportCause(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		return "not answered: time limit or interrupted"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (is the payment service running?)"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "request timeout"
	}
	return "network error"
}
