package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/shoppers"
	"github.com/blackfriday-kafka/shop/services/serve"
)

// timed is a service process started for a measure of its start-up: on a
// port chosen beforehand, so that its /readyz can be polled from the
// moment it is executed.
type timed struct {
	*proc
	lines chan string // its log lines, when asked for
}

// timedGrace is how long a timed process has to stop after SIGTERM.
const timedGrace = time.Minute

// startTimed executes `shop <service>` with the environment of the
// bench's services and env on top, its log in o.LogDir.
func startTimed(o Options, service, id string, withLines bool, env ...string) (*timed, error) {
	port, err := serve.FreePort()
	if err != nil {
		return nil, err
	}
	// At info whatever -log-level says: dedup reads an info line.
	env = append([]string{"LOG_LEVEL=info", "CHECKPOINT_EVERY=", "IDEMPOTENCY_WINDOW="}, env...)
	t := &timed{}
	var pipe func(*exec.Cmd) (io.ReadCloser, error)
	var onLine func(string)
	if withLines {
		lines := make(chan string, 1024)
		t.lines = lines
		pipe = (*exec.Cmd).StderrPipe
		onLine = func(line string) {
			select {
			case lines <- line:
			default: // nobody reads: the file has it
			}
		}
	}
	if t.proc, err = launch(o, service, id, port, env, pipe, onLine); err != nil {
		return nil, err
	}
	t.url = "http://127.0.0.1:" + strconv.Itoa(port)
	if withLines {
		// exited is closed only once the last line is passed on.
		go func() {
			<-t.exited
			close(t.lines)
		}()
	}
	return t, nil
}

// waitReady polls /readyz every 5 ms until it answers 200, and returns
// how long after the exec that was.
func (t *timed) waitReady(ctx context.Context, within time.Duration) (time.Duration, error) {
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	switch err := serve.WaitReady(wctx, t.url, 5*time.Millisecond, t.exited); {
	case err == nil:
		return time.Since(t.start), nil
	case errors.Is(err, serve.ErrStopped):
		return 0, fmt.Errorf("%s exited before it was ready: %v", t.service, t.err)
	case ctx.Err() != nil:
		return 0, ctx.Err()
	default:
		return 0, fmt.Errorf("%s not ready after %s", t.service, within)
	}
}

// totals are the figures of /analytics that a history fixes.
type totals struct {
	Payments, Orders, Emails int64
	RevenueCents             int64
	Users                    int64
}

func (a totals) String() string {
	return fmt.Sprintf("%d payments, %d orders, %d emails, revenue %s, %d users", a.Payments, a.Orders, a.Emails, schemas.Euros(a.RevenueCents), a.Users)
}

// sameCounts compares all but the users, which a history does not fix.
func (a totals) sameCounts(b totals) bool {
	return a.Payments == b.Payments && a.Orders == b.Orders && a.Emails == b.Emails && a.RevenueCents == b.RevenueCents
}

func analyticsTotals(url string) (totals, error) {
	resp, err := http.Get(url + "/analytics")
	if err != nil {
		return totals{}, err
	}
	defer resp.Body.Close()
	var r struct {
		Payments int64       `json:"total_payments"`
		Orders   int64       `json:"total_orders"`
		Emails   int64       `json:"total_emails"`
		Revenue  json.Number `json:"total_revenue"`
		Users    int64       `json:"unique_users"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return totals{}, err
	}
	cents, err := schemas.ParseEuros(r.Revenue.String())
	if err != nil {
		return totals{}, fmt.Errorf("total_revenue %q: %w", r.Revenue, err)
	}
	return totals{r.Payments, r.Orders, r.Emails, int64(cents), r.Users}, nil
}

// analyticsStart is one start of analytics on the history: how long until
// /readyz answered 200, its peak RSS and what /analytics said then.
type analyticsStart struct {
	ready  time.Duration
	peakKB int64
	totals totals
}

// startAnalytics starts analytics, with checkpoints or without (a full
// replay of the five topics), and measures its start.
func startAnalytics(ctx context.Context, o Options, id string, checkpoints bool) (analyticsStart, error) {
	every := "CHECKPOINT_EVERY=0"
	if checkpoints {
		every = "CHECKPOINT_EVERY=10s"
	}
	t, err := startTimed(o, "analytics", id, false, every)
	if err != nil {
		return analyticsStart{}, err
	}
	var s analyticsStart
	s.ready, err = t.waitReady(ctx, 10*time.Minute)
	if err == nil {
		s.totals, err = analyticsTotals(t.url)
	}
	s.peakKB = t.stop(timedGrace) // a graceful stop: with checkpoints, one covering everything read
	return s, err
}

// runRestore measures analytics' start-up on a history of each size of
// o.RestoreSizes: written by this run (history), on top of what the topics
// held before. For each size: a start without checkpoints, which replays
// the five topics from their first offsets ("replay"); a start with
// checkpoints, which reads the history since the last checkpoint and stops
// gracefully, saving a checkpoint of everything; and a second start with
// checkpoints, which loads it and reads the tail ("checkpoint"). Each is
// timed from the exec to /readyz answering 200 (analytics is ready only
// once it has read everything committed when it started), and /analytics
// must then report the history's totals.
func runRestore(ctx context.Context, o Options, h *history, p *progress, res *Results) error {
	p.Printf("restore: analytics starting on a history of %s payments, without and with checkpoints; load average %s", joinInts(o.RestoreSizes), loadAverage())
	base, err := startAnalytics(ctx, o, "bench-restore", true)
	if err != nil {
		return fmt.Errorf("analytics before the history: %w", err)
	}
	p.Printf("restore: before the history: %s (ready after %s)", base.totals, base.ready.Round(time.Millisecond))
	writtenBefore, centsBefore := h.written, h.cents
	for _, n := range o.RestoreSizes {
		if err := h.grow(ctx, n, p); err != nil {
			return err
		}
		want := base.totals
		want.Payments += int64(h.written - writtenBefore)
		want.Orders += int64(h.written - writtenBefore)
		want.Emails += int64(h.written - writtenBefore)
		want.RevenueCents += h.cents - centsBefore
		name := "restore_" + strconv.Itoa(n)

		replay, err := startAnalytics(ctx, o, "bench-restore", false)
		if err != nil {
			return fmt.Errorf("%s replay: %w", name, err)
		}
		p.Printf("%s: full replay (CHECKPOINT_EVERY=0): ready %s after the exec, peak RSS %.0f MB; %s; load average %s",
			name, replay.ready.Round(time.Millisecond), float64(replay.peakKB)/1024, replay.totals, loadAverage())
		first, err := startAnalytics(ctx, o, "bench-restore", true)
		if err != nil {
			return fmt.Errorf("%s first start with checkpoints: %w", name, err)
		}
		p.Printf("%s: a first instance with checkpoints read the history since the last one in %s and saved one as it stopped",
			name, first.ready.Round(time.Millisecond))
		again, err := startAnalytics(ctx, o, "bench-restore", true)
		if err != nil {
			return fmt.Errorf("%s from a checkpoint: %w", name, err)
		}
		p.Printf("%s: from the checkpoint: ready %s after the exec, peak RSS %.0f MB; %s; load average %s",
			name, again.ready.Round(time.Millisecond), float64(again.peakKB)/1024, again.totals, loadAverage())
		for _, s := range []struct {
			what string
			got  totals
		}{{"the full replay", replay.totals}, {"the first start with checkpoints", first.totals}, {"the start from a checkpoint", again.totals}} {
			if !s.got.sameCounts(want) || s.got.Users != replay.totals.Users {
				msg := fmt.Sprintf("%s: %s reports %s, want %s (and the replay's users)", name, s.what, s.got, want)
				if o.Embedded {
					return errors.New(msg)
				}
				p.Printf("%s; on a shared cluster, others may have written meanwhile", msg) // not a failure there
			}
		}
		res.Add(name+"_payments", strconv.FormatInt(replay.totals.Payments, 10))
		res.Add(name+"_replay_s", fmt.Sprintf("%.2f", replay.ready.Seconds()))
		res.Add(name+"_replay_rss_mb", fmt.Sprintf("%.0f", float64(replay.peakKB)/1024))
		res.Add(name+"_checkpoint_s", fmt.Sprintf("%.2f", again.ready.Seconds()))
		res.Add(name+"_checkpoint_rss_mb", fmt.Sprintf("%.0f", float64(again.peakKB)/1024))
	}
	return nil
}

// runDedup measures the order service's memory of past payments, kept on
// disk under STATE_DIR: `shop order` processes started on a history of
// o.DedupOrders orders within their IDEMPOTENCY_WINDOW (the window reaches
// back to the history's first order). A first start, on an empty STATE_DIR,
// rebuilds the memory from order-created when the group assigns it the
// partitions, and stops gracefully; a second one, on the store the first
// left, reads only the tail of order-created after the offsets the store
// covers. Each is timed from the exec: until its log says the orders of all
// three partitions are restored, until /readyz answers 200, and until a new
// payment written then has become an order; then its peak RSS.
func runDedup(ctx context.Context, o Options, h *history, p *progress, res *Results) error {
	if err := h.grow(ctx, o.DedupOrders, p); err != nil {
		return err
	}
	window := (time.Since(h.start) + 2*time.Minute).Truncate(time.Minute)
	stateDir, err := filepath.Abs(filepath.Join(o.LogDir, "state-order-bench-dedup"))
	if err != nil {
		return err
	}
	// Each run starts without a store, and leaves none behind (a few
	// hundred MB at 10,000,000 orders).
	if err := os.RemoveAll(stateDir); err != nil {
		return err
	}
	defer os.RemoveAll(stateDir)
	p.Printf("dedup: an order service with IDEMPOTENCY_WINDOW=%s, reaching back to the %d orders of the history, STATE_DIR=%s; load average %s", window, h.written, stateDir, loadAverage())
	watch, err := newOrderWatch(ctx, o.Brokers, h.cat)
	if err != nil {
		return err
	}
	defer watch.close()
	env := []string{"IDEMPOTENCY_WINDOW=" + window.String(), "STATE_DIR=" + stateDir}

	rebuild, err := startOrderOnHistory(ctx, o, h, watch, env)
	if err != nil {
		return fmt.Errorf("without a store: %w", err)
	}
	p.Printf("dedup: without a store: %d orders of the window read from Kafka into it %s after the exec; ready after %s; a new payment was an order %s after the exec; peak RSS %.0f MB; load average %s",
		rebuild.orders, rebuild.restored.Round(time.Millisecond), rebuild.ready.Round(time.Millisecond), rebuild.firstOrder.Round(time.Millisecond), float64(rebuild.peakKB)/1024, loadAverage())
	again, err := startOrderOnHistory(ctx, o, h, watch, env)
	if err != nil {
		return fmt.Errorf("with the store: %w", err)
	}
	storeBytes, err := dirBytes(stateDir)
	if err != nil {
		return err
	}
	p.Printf("dedup: with the store in place: %d orders of the tail read from Kafka %s after the exec; ready after %s; a new payment was an order %s after the exec; peak RSS %.0f MB; the store %.0f MB on disk; load average %s",
		again.orders, again.restored.Round(time.Millisecond), again.ready.Round(time.Millisecond), again.firstOrder.Round(time.Millisecond), float64(again.peakKB)/1024, float64(storeBytes)/(1<<20), loadAverage())
	res.Add("dedup_orders", strconv.FormatInt(rebuild.orders, 10))
	res.Add("dedup_restore_s", fmt.Sprintf("%.2f", again.restored.Seconds()))
	res.Add("dedup_ready_s", fmt.Sprintf("%.2f", again.ready.Seconds()))
	res.Add("dedup_first_order_s", fmt.Sprintf("%.2f", again.firstOrder.Seconds()))
	res.Add("dedup_rss_mb", fmt.Sprintf("%.0f", float64(again.peakKB)/1024))
	res.Add("dedup_rebuild_s", fmt.Sprintf("%.2f", rebuild.firstOrder.Seconds()))
	res.Add("dedup_rebuild_rss_mb", fmt.Sprintf("%.0f", float64(rebuild.peakKB)/1024))
	res.Add("dedup_store_mb", fmt.Sprintf("%.0f", float64(storeBytes)/(1<<20)))
	return nil
}

// dirBytes is the size of the files under dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	return n, err
}

// orderStart is one start of the order service on the history: how long
// after the exec its log said the orders of every partition were restored,
// and how many it read from Kafka for that; /readyz answered 200; a new
// payment was an order; and its peak RSS.
type orderStart struct {
	restored, ready, firstOrder time.Duration
	orders                      int64
	peakKB                      int64
}

// startOrderOnHistory starts `shop order` with env, measures its start as
// orderStart says, and stops it gracefully: it leaves its group, and saves
// a checkpoint of its view.
func startOrderOnHistory(ctx context.Context, o Options, h *history, watch *orderWatch, env []string) (orderStart, error) {
	var s orderStart
	t, err := startTimed(o, "order", "bench-dedup", true, env...)
	if err != nil {
		return s, err
	}
	stopped := false
	defer func() {
		if !stopped {
			t.stop(timedGrace)
		}
	}()

	restore, gotLines := readRestoreLog(t)
	if s.ready, err = t.waitReady(ctx, 10*time.Minute); err != nil {
		return s, err
	}
	select {
	case <-gotLines:
	case <-time.After(10 * time.Minute):
		return s, errors.New("no log line says the orders of all three partitions are restored")
	case <-ctx.Done():
		return s, ctx.Err()
	}
	s.restored, s.orders = restore.restored, restore.orders
	if s.restored == 0 {
		return s, fmt.Errorf("the order service's log said the orders of partitions %v only were restored", slices.Sorted(maps.Keys(restore.parts)))
	}

	// A new payment, now, becomes an order.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 19))
	pay := shoppers.Payment(rng, 100_000)
	r, err := schemas.Payments.Codec(h.cat).Record(&pay)
	if err != nil {
		return s, err
	}
	if err := h.payments.ProduceSync(ctx, r).FirstErr(); err != nil {
		return s, err
	}
	if err := watch.wait(ctx, schemas.OrderID(pay.PaymentID), time.Minute); err != nil {
		return s, err
	}
	s.firstOrder = time.Since(t.start)
	// The group has consumed the new payment; the email stage has one
	// order more to read, as after any payment.
	s.peakKB = t.stop(timedGrace)
	stopped = true
	return s, nil
}

// restoreLog is what the order service's log says of the restore of its
// memory of past payments: the orders restored, of which partitions, and
// how long after the exec the last partition was.
type restoreLog struct {
	restored time.Duration
	orders   int64
	parts    map[int32]bool
}

// readRestoreLog reads t's log lines as they come; done closes once they
// have said every partition is restored, or t's log ended. Read the log
// once done is closed.
func readRestoreLog(t *timed) (log *restoreLog, done <-chan struct{}) {
	log = &restoreLog{parts: map[int32]bool{}}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for line := range t.lines {
			var l struct {
				Msg        string  `json:"msg"`
				Partitions []int32 `json:"partitions"`
				Payments   int64   `json:"payments"`
			}
			if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "orders of the window restored" {
				continue
			}
			log.orders += l.Payments
			for _, pt := range l.Partitions {
				log.parts[pt] = true
			}
			if len(log.parts) == infra.Partitions {
				log.restored = time.Since(t.start)
				return
			}
		}
	}()
	return log, closed
}

// orderWatch follows order-created with read_committed from its end.
type orderWatch struct {
	cl     *kgo.Client
	orders *schemas.Codec[schemas.OrderCreated]
}

func newOrderWatch(ctx context.Context, brokers []string, cat *schemas.Catalog) (*orderWatch, error) {
	from, err := infra.EndOffsets(ctx, brokers, []string{schemas.Orders.Name})
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(from), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return nil, err
	}
	return &orderWatch{cl: cl, orders: schemas.Orders.Codec(cat)}, nil
}

// wait waits until the order orderID is committed.
func (w *orderWatch) wait(ctx context.Context, orderID string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		fetches := w.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("order %s not committed after %s", orderID, within)
		}
		found := false
		fetches.EachRecord(func(r *kgo.Record) {
			if o, err := w.orders.Decode(ctx, r.Value); err == nil && o.OrderID == orderID {
				found = true
			}
		})
		if found {
			return nil
		}
	}
}

func (w *orderWatch) close() { w.cl.Close() }

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}
