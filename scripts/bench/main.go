// Command bench measures the shop, on a cluster of its own or on the one
// KAFKA_BROKERS names. The sections, in the order they run:
//
//   - e2e: from payment accepted (the payment record's timestamp) to its
//     email on email-sent, committed and readable with read_committed, at a
//     steady rate of payments over HTTP, one run per rate of -rates
//     (default 100, 1,000 and 5,000/s): e2e_p50_ms and e2e_p99_ms at
//     1,000/s, e2e_<rate>_p50_ms and e2e_<rate>_p99_ms at the others.
//   - ingest: POST /payment from a fixed number of clients for a fixed time,
//     each client posting its next payment once the last is answered, one
//     level per count of -c (default 64 and 256): ingest_rps, ingest_p50_ms
//     and ingest_p99_ms at 64, ingest_<n>_rps, _p50_ms and _p99_ms at the
//     others. Only 200s count, and the payment service answers 200 only
//     after Kafka acknowledged the record on all in-sync replicas. The
//     clients are lean (-http lean: a connection each, one write and a
//     buffered read per payment) so that the load takes the 2 cores from
//     the shop as little as it can; -http std uses net/http's client. Each
//     level says how much CPU each process spent per payment.
//   - overload: the payment edge past its capacity, open-loop (the
//     overload command: each payment sent at its scheduled time, whatever
//     the earlier ones are doing, its client giving up 2 s after that
//     time). The shop (this process, with the embedded cluster, and the
//     service processes, the payment one started fresh for the section)
//     runs on CPU 0 and the load generator on CPU 1, so that the load does
//     not take the CPU the shop needs as the rate grows; without 2 CPUs or
//     taskset it runs unpinned and says so. First the capacity: the rate
//     stepped up from 250/s, 1.5 times a step of 5 s, until a step fails
//     (a payment not answered 200, or a p99 of 100 ms or more), then
//     bisected between the last good and the first failed rate
//     (overload_capacity_rps). Then 3 times the capacity for -overload-for:
//     overload_offered_rps, overload_ok_rps, overload_goodput_ratio (the
//     ok rate over the capacity), overload_shed_rps and _p99_ms,
//     overload_ok_p99_ms, overload_timeouts, overload_rss_mb (the payment
//     process's peak RSS), and, read on Kafka by the payments' keys,
//     overload_charged_unanswered (charged without a 200) and
//     overload_lost (answered 200, no order once the pipeline drained).
//   - drain: a flood of payments written straight to Kafka, and the time
//     until every one has its email, with 1 and 3 order instances and each
//     PROCESSING_DELAY (drain_<instances>x<delay>_s).
//   - raw: the raw produce limit of the same cluster: franz-go producing the
//     ingest's payment records (same bodies, encoded as the payment service
//     does, keyed by user) with acks=all and the idempotent producer, to a
//     topic of the run's own, from enough goroutines and records in flight
//     to saturate it, for the ingest's duration (raw_produce_rps), and
//     ingest_256_over_raw, the ingest at 256 clients over it; then one
//     transactional producer alone, transaction after transaction, the
//     floor of an exactly-once hop (raw_txn_p50_ms, raw_txn_p99_ms,
//     raw_txn_per_s); then, at each rate of -rates, the same records at
//     that steady rate with linger 0, as the payment service produces: the
//     acknowledgement's latency and how busy the machine was
//     (raw_<rate>_ack_p99_ms, raw_<rate>_busy_pct), the cluster's own
//     share of the machine at the e2e section's load.
//   - restore (only with -only): analytics started on a history of
//     100,000 and 1,000,000 payments (-restore-sizes; 10,000,000 on
//     request), with their orders, emails and deliveries, written straight to
//     the shop's topics: from the exec to /readyz 200, with /analytics then
//     reporting the history's totals, and the peak RSS; without checkpoints,
//     a full replay (restore_<n>_replay_s, restore_<n>_replay_rss_mb), and
//     after a first instance checkpointed and stopped
//     (restore_<n>_checkpoint_s, restore_<n>_checkpoint_rss_mb).
//   - dedup (only with -only): the order service started with 1,000,000
//     orders of history in its IDEMPOTENCY_WINDOW (-dedup-orders), its
//     memory of past payments on disk under STATE_DIR: a first start
//     without the store, which rebuilds it from order-created
//     (dedup_rebuild_s, until a new payment is an order, and
//     dedup_rebuild_rss_mb), then a start with the store it left, which
//     reads only the tail: until its log says the partitions are restored,
//     until /readyz, until a new payment is an order, and its peak RSS
//     (dedup_restore_s, dedup_ready_s, dedup_first_order_s, dedup_rss_mb);
//     and the store's size on disk (dedup_store_mb).
//   - ledger (only with -only): the payment service on a history of
//     1,000,000 answers to Idempotency-Keys in its IDEMPOTENCY_WINDOW
//     (-ledger-keys), written straight to payment-requests: from the exec
//     to /readyz without its store, which it builds from the topic
//     (ledger_rebuild_s), and again on the store it left
//     (ledger_ready_s); then 2,000 retries of the history's keys, each
//     replayed from the store (ledger_replay_p99_ms), and its peak RSS
//     (ledger_rss_mb).
//   - eos: the order transform on the exactly-once engine against the same
//     engine in at-least-once mode, on the same records, alternating rounds
//     so that drift (other load on the machine) hits both alike (eos_rps,
//     alos_rps, eos_over_alos); last, because on real brokers its millions
//     of records keep the disks busy for a while.
//
// And the peak RSS (VmHWM) of each service process of e2e, ingest,
// overload and drain (rss_<service>_mb). The default sections are e2e,
// ingest, overload, drain, raw and eos: about 9 minutes on the embedded
// cluster of a busy 2-core machine, 4.5 of them in drain (its 10 ms delays,
// and the wait before each flood for the services to go idle: the email
// delivery loops still send the emails of e2e and ingest over SMTP). restore and dedup take about
// 100 s more there (most of it the full replay of 1,000,000 payments), and
// write 4 records per payment of history to the
// shop's topics for good: on a shared cluster every later replay reads
// them; they refuse to run while a service of the shop is running on the
// cluster, or has work left, because they move its groups to the end.
//
// The services run as bin/shop processes (make build), so that their memory
// is their own; the embedded cluster, when there is one, runs in this
// process, and the email instances deliver to a mail sink of this process
// that keeps nothing.
//
//	go run ./scripts/bench [-only e2e,ingest,overload,drain,raw,eos] [-c 64,256] [-rates 100,1000,5000] ...
//	go run ./scripts/bench -only restore,dedup [-restore-sizes 100000,1000000]
//
// Progress goes to stdout as it runs; the last line is "bench: " followed by
// name=value pairs. The exit status is 1 when a section could not measure.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/target"
)

// Options of a run.
type Options struct {
	Sections    map[string]bool
	Shop        string
	Pin         []string // the service processes start under this command: taskset -c 0
	LogDir      string
	LogLevel    string // of the service processes
	TxnRecords  int
	TxnInterval time.Duration

	Clients     []int // ingest: one level per count of clients
	IngestFor   time.Duration
	RawBuffered int           // raw: records in flight
	RawLinger   time.Duration // raw at the e2e rates: the producer's linger
	HTTPClient  string        // ingest: lean or std
	OverloadFor time.Duration // overload: how long at 3 times the capacity

	EOSRecords  int
	EOSRounds   int
	EOSRoundFor time.Duration

	Rates  []int // e2e: payments per second, one run each
	E2EFor time.Duration

	RestoreSizes []int // restore: payments of history, one measure each
	DedupOrders  int   // dedup: orders of history in the window
	LedgerKeys   int   // ledger: answers to Idempotency-Keys of history in the window

	Flood     int
	Instances []int
	Delays    []time.Duration

	Brokers     []string
	RegistryURL string
	Embedded    bool
}

// allSections are the sections there are, in the order they run;
// defaultSections those a run without -only runs.
var (
	allSections     = []string{"e2e", "ingest", "overload", "drain", "raw", "restore", "dedup", "ledger", "eos"}
	defaultSections = []string{"e2e", "ingest", "overload", "drain", "raw", "eos"}
)

func main() {
	o, timeout := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The clients' own warnings go to stderr; progress goes to stdout.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	// The bench's own clients and services sign in as no one: it measures
	// the open stack, and says so rather than fail at its first request.
	if target.FromEnv().Config.Secure {
		fail("SECURE=1: bench measures the open stack; run it without SECURE, on a cluster of make kafka-up or its own")
	}
	cluster, err := target.Cluster(ctx)
	if err != nil {
		fail("%v", err)
	}
	defer cluster.Close()
	o.Brokers, o.RegistryURL, o.Embedded = cluster.Brokers, cluster.RegistryURL, cluster.Embedded

	res, err := Run(ctx, o, os.Stdout)
	fmt.Println(res.Line())
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// lists are the flags that take comma-separated lists, read once the
// command line is parsed.
type lists struct {
	only, clients, rates, restoreSizes, instances, delays *string
}

// parseFlags reads the command line into the run's options and its
// timeout, stopping the bench with a message at a flag it cannot take.
func parseFlags() (Options, time.Duration) {
	var o Options
	l, timeout := defineFlags(&o)
	flag.Usage = usage
	flag.Parse()
	if o.HTTPClient != "lean" && o.HTTPClient != "std" {
		fail("-http: %q is neither lean nor std", o.HTTPClient)
	}
	o.Sections = map[string]bool{}
	for _, s := range strings.Split(*l.only, ",") {
		if !slices.Contains(allSections, s) {
			fail("-only: no section %q (want %s)", s, strings.Join(allSections, ", "))
		}
		o.Sections[s] = true
	}
	o.Instances = counts("instances", *l.instances)
	o.Clients = counts("c", *l.clients)
	o.Rates = counts("rates", *l.rates)
	o.RestoreSizes = counts("restore-sizes", *l.restoreSizes)
	if !slices.IsSorted(o.RestoreSizes) {
		fail("-restore-sizes: %s: each size is the history so far, so they grow", *l.restoreSizes)
	}
	for _, s := range strings.Split(*l.delays, ",") {
		if s == "0" {
			s = "0s"
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			fail("-delays: %v", err)
		}
		o.Delays = append(o.Delays, d)
	}
	return o, *timeout
}

// defineFlags defines the flags, the plain ones straight into o.
func defineFlags(o *Options) (lists, *time.Duration) {
	l := lists{
		only:         flag.String("only", strings.Join(defaultSections, ","), "sections to run, comma-separated: "+strings.Join(allSections, ", ")+"; restore and dedup only when named"),
		clients:      flag.String("c", "64,256", "ingest: concurrent HTTP clients, one level each, comma-separated (64 is ingest_rps, n is ingest_<n>_rps)"),
		rates:        flag.String("rates", "100,1000,5000", "e2e: payments per second, one run each, comma-separated (1000 is e2e_p50_ms, n is e2e_<n>_p50_ms)"),
		restoreSizes: flag.String("restore-sizes", "100000,1000000", "restore: payments of history written before each measure, comma-separated, growing (10000000 on request: about 10 GB of memory on the embedded cluster, and a long replay)"),
		instances:    flag.String("instances", "1,3", "drain: order instance counts"),
		delays:       flag.String("delays", "0,10ms", "drain: PROCESSING_DELAY values"),
	}
	flag.StringVar(&o.Shop, "shop", "bin/shop", "the shop binary (make build)")
	flag.StringVar(&o.LogDir, "logs", ".run/bench", "where the service processes' logs go")
	flag.StringVar(&o.LogLevel, "log-level", "info", "LOG_LEVEL of the service processes")
	flag.IntVar(&o.TxnRecords, "txn-records", target.EnvInt("TXN_MAX_RECORDS", 0), "most records per transaction, 0 for the default (env TXN_MAX_RECORDS)")
	flag.DurationVar(&o.TxnInterval, "txn-interval", target.EnvDuration("TXN_MAX_INTERVAL", 0), "commit interval, 0 for the default (env TXN_MAX_INTERVAL)")
	flag.DurationVar(&o.IngestFor, "ingest-for", 10*time.Second, "ingest and raw: how long each level")
	flag.StringVar(&o.HTTPClient, "http", "lean", "ingest: the clients' HTTP client: lean (one connection each, one write and a buffered read per payment, as wrk does) or std (net/http's)")
	flag.DurationVar(&o.OverloadFor, "overload-for", 15*time.Second, "overload: how long the load at 3 times the capacity lasts")
	flag.IntVar(&o.RawBuffered, "raw-inflight", 20_000, "raw: records in flight (the producer's MaxBufferedRecords)")
	flag.DurationVar(&o.RawLinger, "raw-linger", 0, "raw at each of -rates: the producer's linger (0, as the payment service)")
	flag.IntVar(&o.EOSRecords, "eos-records", 600_000, "eos: records per round")
	flag.IntVar(&o.EOSRounds, "eos-rounds", 7, "eos: rounds of each mode; the figures are medians")
	flag.DurationVar(&o.EOSRoundFor, "eos-round-for", 3*time.Second, "eos: a round ends this long after its first commit, if it has not read every record by then")
	flag.DurationVar(&o.E2EFor, "e2e-for", 15*time.Second, "e2e: how long")
	flag.IntVar(&o.DedupOrders, "dedup-orders", 1_000_000, "dedup: orders of history in the order service's window")
	flag.IntVar(&o.LedgerKeys, "ledger-keys", 1_000_000, "ledger: answers to Idempotency-Keys of history in the payment service's window")
	flag.IntVar(&o.Flood, "flood", 10_000, "drain: payments in the flood")
	return l, flag.Duration("timeout", 15*time.Minute, "give up after this long")
}

func usage() {
	out := flag.CommandLine.Output()
	fmt.Fprint(out, `usage: go run ./scripts/bench [flags]    (make bench ARGS="flags")

Measures the shop on an embedded cluster of its own, or on KAFKA_BROKERS and
SCHEMA_REGISTRY_URL when they are set, and ends with one line, "bench: " and
name=value pairs. Sections, in the order they run (-only picks them):

  e2e      payment to committed email at each rate of -rates: e2e_p50_ms and
           e2e_p99_ms at 1,000/s, e2e_<rate>_p50_ms and e2e_<rate>_p99_ms, how
           busy the machine was (e2e_<rate>_busy_pct, e2e_idle_busy_pct with
           the shop idle) and the CPU each process spent per payment
  ingest   POST /payment from each count of clients of -c: ingest_rps (64),
           ingest_<n>_rps (ingest_256_rps), with p50 and p99, and the CPU each
           process spent per payment
  overload the edge past its capacity, open-loop, the shop on CPU 0 and the
           load generator on CPU 1: the capacity (the highest rate whose p99
           stays under 100 ms, stepped up from 250/s), then 3 times it for
           -overload-for, clients giving up after 2 s: overload_capacity_rps,
           overload_offered_rps, overload_ok_rps, overload_goodput_ratio,
           overload_shed_rps, overload_shed_p99_ms, overload_ok_p99_ms,
           overload_timeouts, overload_rss_mb (the payment process's peak),
           overload_lost, overload_charged_unanswered
  drain    a flood straight to Kafka drained by 1 and 3 order instances:
           drain_<n>x<delay>_s
  raw      franz-go alone producing the same records, acks=all, idempotent:
           raw_produce_rps, and ingest_256_over_raw; one transactional
           producer alone: raw_txn_p50_ms; the records at each rate of
           -rates: raw_<rate>_ack_p99_ms, raw_<rate>_busy_pct
  restore  analytics started on a history of each size of -restore-sizes,
           full replay and from a checkpoint: restore_<n>_replay_s and _rss_mb,
           restore_<n>_checkpoint_s and _rss_mb (not by default: about 100 s
           here, and it leaves its history on the cluster)
  dedup    the order service started with -dedup-orders orders in its window,
           first without its store (STATE_DIR), which it rebuilds from Kafka:
           dedup_rebuild_s, dedup_rebuild_rss_mb; then with the store it left:
           dedup_restore_s, dedup_ready_s, dedup_first_order_s, dedup_rss_mb,
           dedup_store_mb (not by default, as restore)
  ledger   the payment service on -ledger-keys answers to Idempotency-Keys
           in its window, without its store and on it: ledger_rebuild_s,
           ledger_ready_s, ledger_replay_p99_ms, ledger_rss_mb (not by
           default, as restore)
  eos      exactly-once against at-least-once on the same engine: eos_rps,
           alos_rps, eos_over_alos

The default, e2e,ingest,overload,drain,raw,eos, takes about 9 minutes on the
embedded cluster (4.5 in drain, under 2 in overload); restore,dedup about
100 s more.

flags:
`)
	flag.PrintDefaults()
}

// Run runs the sections o asks for and returns their figures.
func Run(ctx context.Context, o Options, out io.Writer) (*Results, error) {
	res := &Results{}
	where := "embedded cluster"
	res.Add("cluster", "embedded")
	if !o.Embedded {
		where = "cluster"
		res.Add("cluster", "kafka")
	}
	res.Add("load_start", loadAverage())
	p := newProgress(out)
	p.Printf("benchmarks on the %s %s, registry %s; %d CPUs, %s; load average %s",
		where, strings.Join(o.Brokers, ","), o.RegistryURL, runtime.NumCPU(), runtime.Version(), loadAverage())
	p.Printf("transactions: at most %s records, %s", orDefault(o.TxnRecords, "100000"), orDefaultDuration(o.TxnInterval, "100ms"))
	defer func() {
		res.Add("load_end", loadAverage())
		res.Add("took_s", fmt.Sprintf("%.0f", p.Elapsed().Seconds()))
	}()

	reg, err := schemas.NewRegistryClient(o.RegistryURL)
	if err != nil {
		return res, err
	}
	cat, err := schemas.Resolved(ctx, reg)
	if err != nil {
		return res, err
	}

	if o.Sections["ingest"] || o.Sections["e2e"] || o.Sections["overload"] || o.Sections["drain"] {
		if err := runServices(ctx, o, cat, p, res); err != nil {
			return res, err
		}
	}
	if o.Sections["raw"] {
		if err := runRaw(ctx, o, cat, p, res); err != nil {
			return res, fmt.Errorf("raw: %w", err)
		}
	}
	if o.Sections["restore"] || o.Sections["dedup"] || o.Sections["ledger"] {
		if err := runHistory(ctx, o, cat, p, res); err != nil {
			return res, err
		}
	}
	if ingest, raw := res.Get(ingestName(256, "rps")), res.Get("raw_produce_rps"); ingest != "" && raw != "" {
		i, _ := strconv.ParseFloat(ingest, 64)
		r, _ := strconv.ParseFloat(raw, 64)
		if r > 0 {
			res.Add("ingest_256_over_raw", fmt.Sprintf("%.3f", i/r))
		}
	}
	// Last: on real brokers its millions of records load the disks, which
	// the other sections would then feel.
	if o.Sections["eos"] {
		if err := runEOS(ctx, o, cat, p, res); err != nil {
			return res, fmt.Errorf("eos: %w", err)
		}
	}
	return res, nil
}

// runServices runs the sections that need the services: e2e, ingest,
// overload and drain, and reports each service's peak RSS.
func runServices(ctx context.Context, o Options, cat *schemas.Catalog, p *progress, res *Results) error {
	if err := os.MkdirAll(o.LogDir, 0o755); err != nil {
		return err
	}
	sink, err := startMailSink()
	if err != nil {
		return err
	}
	defer sink.Close()
	f := newFleet(o)
	f.sink = sink
	defer func() {
		p.Printf("peak RSS (VmHWM) per process: %s", f.stopAll())
		for _, s := range []string{"payment", "order", "email", "analytics"} {
			if kb, ok := f.peakKB[s]; ok {
				res.Add("rss_"+s+"_mb", fmt.Sprintf("%.0f", float64(kb)/1024))
			}
		}
	}()
	w, err := newWatcher(ctx, cat, o.Brokers)
	if err != nil {
		return err
	}
	defer w.close()

	p.Printf("starting payment, order, email and analytics as %s processes (logs in %s; the emails go to a mail sink on %s)", o.Shop, o.LogDir, sink.Addr())
	for _, s := range []string{"payment", "email", "analytics"} {
		if _, err := f.start(ctx, s, "bench-1"); err != nil {
			return err
		}
	}
	if err := f.startOrders(ctx, 1, 0); err != nil {
		return err
	}
	if err := waitGroup(ctx, o.Brokers, "email-service-group", 1); err != nil {
		return err
	}
	p.Printf("services ready; idle after %s (they first read their views' topics from the beginning)", f.settle(ctx).Round(100*time.Millisecond))
	payURL := f.url("payment")

	if o.Sections["e2e"] {
		if err := runE2E(ctx, o, f, payURL, w, p, res); err != nil {
			return fmt.Errorf("e2e: %w", err)
		}
	}
	if o.Sections["ingest"] {
		if err := runIngest(ctx, o, f, payURL, w, p, res); err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
	}
	if o.Sections["overload"] {
		if err := runOverload(ctx, o, f, p, res); err != nil {
			return fmt.Errorf("overload: %w", err)
		}
	}
	if o.Sections["drain"] {
		if err := runDrain(ctx, o, cat, f, w, p, res); err != nil {
			return fmt.Errorf("drain: %w", err)
		}
	}
	// The history sections refuse a group with work left: let the delivery
	// loops send what the sections above left them before the fleet stops.
	if o.Sections["restore"] || o.Sections["dedup"] {
		f.settle(ctx)
	}
	return nil
}

// runHistory runs the sections that start a service on a history written
// straight to the shop's topics: restore, then dedup, on the same history.
func runHistory(ctx context.Context, o Options, cat *schemas.Catalog, p *progress, res *Results) error {
	if err := os.MkdirAll(o.LogDir, 0o755); err != nil {
		return err
	}
	h, err := newHistory(o, cat)
	if err != nil {
		return err
	}
	defer h.close()
	// The ledger's history moves no group: only the others need them idle.
	if o.Sections["restore"] || o.Sections["dedup"] {
		if err := h.check(ctx); err != nil {
			return fmt.Errorf("history: %w", err)
		}
	}
	began := time.Now()
	if o.Sections["restore"] {
		if err := runRestore(ctx, o, h, p, res); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	if o.Sections["dedup"] {
		if err := runDedup(ctx, o, h, p, res); err != nil {
			return fmt.Errorf("dedup: %w", err)
		}
	}
	if o.Sections["ledger"] {
		if err := runLedger(ctx, o, h, p, res); err != nil {
			return fmt.Errorf("ledger: %w", err)
		}
	}
	p.Printf("history sections done in %s", time.Since(began).Round(time.Second))
	return nil
}

// loadAverage is the 1-minute load average, such as "1.52".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(b))[0]
}

func orDefault(n int, def string) string {
	if n == 0 {
		return def
	}
	return strconv.Itoa(n)
}

func orDefaultDuration(d time.Duration, def string) string {
	if d == 0 {
		return def
	}
	return d.String()
}

// counts parses a flag's comma-separated list of positive whole numbers.
func counts(name, list string) []int {
	var out []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fail("-%s: %q is not a positive whole number", name, s)
		}
		out = append(out, n)
	}
	return out
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(2)
}
