package openloop

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blackfriday-kafka/shop/scripts/leanhttp"
	"github.com/blackfriday-kafka/shop/scripts/progress"
	"github.com/blackfriday-kafka/shop/scripts/shoppers"
)

// outcome is what became of one payment, as its client saw it.
type outcome uint8

const (
	pending  outcome = iota
	ok               // 200: accepted
	shed             // 503: refused for overload
	other            // any other status
	failed           // the connection failed: refused, reset, closed
	timedOut         // no answer by the give-up
)

// load is one open-loop run: its schedule, its pool of connections, and
// what became of each payment, by index. Payment i is user o.FirstUser+i.
type load struct {
	o      Options
	client *leanhttp.Client
	sched  schedule

	jobs chan int // payments handed to a busy pool, in order
	// free is the connections waiting for a payment, less the payments
	// queued for one: below zero, payments wait for a connection.
	free    atomic.Int64
	conns   atomic.Int64  // connections in the pool
	seeds   atomic.Uint64 // each connection's carts of its own
	offered atomic.Int64  // payments whose time has come
	// counts are the payments answered or given up, by outcome.
	counts [timedOut + 1]atomic.Int64
	wg     sync.WaitGroup

	// By payment, each written once by the connection that sends it.
	outcome []outcome
	latency []time.Duration // from its scheduled time to its answer
	late    []time.Duration // from its scheduled time to its write
	unsent  atomic.Int64    // timed out waiting for a connection
	// lateAnswers timed out though an answer came: the generator read it
	// after the give-up, its timers late for want of CPU.
	lateAnswers atomic.Int64

	mu           sync.Mutex
	statuses     map[int]int // the other statuses: three digits, so at most 1,000 keys
	bareShed     int         // 503s without Retry-After
	firstFailure string
}

func newLoad(o Options) (*load, error) {
	client, err := leanhttp.NewClient(o.URL)
	if err != nil {
		return nil, err
	}
	n := o.payments()
	return &load{
		o: o, client: client,
		sched:    schedule{rate: o.Rate, n: n},
		jobs:     make(chan int, min(n, 1<<20)),
		outcome:  make([]outcome, n),
		latency:  make([]time.Duration, n),
		late:     make([]time.Duration, n),
		statuses: map[int]int{},
	}, nil
}

// run offers every payment at its time, in batches from a 1 ms tick, and
// returns once each is answered or given up; out, if not nil, gets a line
// of progress every o.Progress. Once ctx ends it offers no more.
func (l *load) run(ctx context.Context, out io.Writer) {
	l.warm(ctx)
	every := l.o.Progress
	if out == nil {
		every = 0
	}
	l.sched.start = time.Now()
	stop := progress.Every(every, func() { fmt.Fprintln(out, l.progress()) })
	defer stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	next := 0
	for next < l.sched.n {
		for due := l.sched.due(time.Now()); next < due; next++ {
			l.offer(next)
		}
		if next == l.sched.n {
			break
		}
		select {
		case <-ctx.Done():
			l.sched.n = next // what was never offered is no part of the run
		case <-tick.C:
		}
	}
	close(l.jobs)
	l.wg.Wait()
}

// offer hands payment i to a free connection, or to a new one while the
// pool is below its bound; past it, i waits for the first connection to
// come free, its latency growing from its scheduled time all the same.
func (l *load) offer(i int) {
	l.offered.Add(1)
	if l.free.Add(-1) >= 0 || l.conns.Load() >= int64(l.o.MaxConns) {
		l.jobs <- i
		return
	}
	l.free.Add(1) // the new connection takes i itself
	l.conns.Add(1)
	l.wg.Add(1)
	go l.connection(l.client.Conn(), i)
}

// warm opens o.Warm connections before the first payment is due, each
// then waiting for one, so that the run does not begin with a storm of
// dials, which a server on a busy CPU accepts late: its first payments
// would wait in the kernel's accept queue, and ever more connections open
// for the next. A dial that fails leaves its connection to dial at its
// first payment.
func (l *load) warm(ctx context.Context) {
	conns := make([]*leanhttp.Conn, l.o.Warm)
	var dials sync.WaitGroup
	for k := range conns {
		conns[k] = l.client.Conn()
		dials.Go(func() { _ = conns[k].Open(ctx, time.Now().Add(10*time.Second)) })
	}
	dials.Wait()
	for _, c := range conns {
		l.free.Add(1)
		l.conns.Add(1)
		l.wg.Add(1)
		go l.connection(c, -1)
	}
}

// connection is one client connection of the pool: it pays first (none
// if -1), then every payment handed to it, until the run has offered them
// all.
func (l *load) connection(c *leanhttp.Conn, first int) {
	defer l.wg.Done()
	defer c.Close()
	rng := rand.New(rand.NewPCG(uint64(l.o.FirstUser), l.seeds.Add(1)))
	buf := make([]byte, 0, 512)
	body := make([]byte, 0, 256)
	i, more := first, true
	if first < 0 {
		i, more = <-l.jobs
	}
	for ; more; i, more = <-l.jobs {
		body = shoppers.AppendBody(body[:0], rng, l.o.FirstUser+int64(i), 2)
		buf = l.client.AppendPost(buf[:0], "/payment", body)
		l.pay(c, i, buf)
		l.free.Add(1)
	}
}

// pay sends payment i, whose request is req, and records what became of
// it. Its client gives up o.GiveUp after the payment's scheduled time,
// however long it waited for a connection.
func (l *load) pay(c *leanhttp.Conn, i int, req []byte) {
	due := l.sched.at(i)
	giveUp := due.Add(l.o.GiveUp)
	if !time.Now().Before(giveUp) {
		l.unsent.Add(1)
		l.settle(i, timedOut, l.o.GiveUp)
		return
	}
	l.late[i] = time.Since(due)
	a, err := c.Do(context.Background(), req, giveUp)
	took := time.Since(due)
	switch {
	case leanhttp.TimedOut(err):
		l.settle(i, timedOut, took)
	case err == nil && took >= l.o.GiveUp:
		// Its client had given up by then: what it saw is a timeout.
		l.lateAnswers.Add(1)
		c.Close()
		l.settle(i, timedOut, took)
	case err != nil:
		l.mu.Lock()
		if l.firstFailure == "" {
			l.firstFailure = err.Error()
		}
		l.mu.Unlock()
		l.settle(i, failed, took)
	case a.Status == http.StatusOK:
		l.settle(i, ok, took)
	case a.Status == http.StatusServiceUnavailable:
		if !a.RetryAfter {
			l.mu.Lock()
			l.bareShed++
			l.mu.Unlock()
		}
		l.settle(i, shed, took)
	default:
		l.mu.Lock()
		l.statuses[a.Status]++
		l.mu.Unlock()
		l.settle(i, other, took)
	}
}

func (l *load) settle(i int, what outcome, took time.Duration) {
	l.outcome[i], l.latency[i] = what, took
	l.counts[what].Add(1)
}

// progress is a line of how the run goes.
func (l *load) progress() string {
	offered, settled := l.offered.Load(), int64(0)
	for i := range l.counts {
		settled += l.counts[i].Load()
	}
	line := fmt.Sprintf("overload: %3.0fs  offered %d, ok %d, shed %d, timeouts %d, in flight %d, connections %d",
		time.Since(l.sched.start).Seconds(), offered, l.counts[ok].Load(), l.counts[shed].Load(), l.counts[timedOut].Load(),
		offered-settled, l.conns.Load())
	if queued := -l.free.Load(); queued > 0 {
		line += fmt.Sprintf(" (all busy: %d payments wait for one)", queued)
	}
	return line
}

// otherStatuses says which other statuses came, such as "409×3, 500×1".
func (l *load) otherStatuses() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for s, n := range l.statuses {
		parts = append(parts, fmt.Sprintf("%d×%d", s, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
