// Command bench measures the shop, on a cluster of its own or on the one
// KAFKA_BROKERS names:
//
//  1. ingest: POST /payment from a fixed number of clients for a fixed time;
//     only 200s count, and the payment service answers 200 only after Kafka
//     acknowledged the record on all in-sync replicas (ingest_rps, p50, p99).
//  2. eos: the order transform on the exactly-once engine against the same
//     engine in at-least-once mode, on the same records, alternating rounds
//     so that drift (other load on the machine) hits both alike (eos_rps,
//     alos_rps, eos_over_alos).
//  3. e2e: from payment accepted (the payment record's timestamp) to its
//     email on email-sent, committed and readable with read_committed, at a
//     steady rate of payments over HTTP (e2e_p50_ms, e2e_p99_ms).
//  4. drain: a flood of payments written straight to Kafka, and the time
//     until every one has its email, with 1 and 3 order instances and each
//     PROCESSING_DELAY (drain_<instances>x<delay>_s).
//  5. the peak RSS (VmHWM) of each service process (rss_<service>_mb).
//
// The services run as bin/shop processes (make build), so that their memory
// is their own; the embedded cluster, when there is one, runs in this process.
// Sections run in the order e2e, ingest, drain, eos: e2e on an idle
// pipeline, eos last because on real brokers its millions of records keep
// the disks busy for a while.
//
//	go run ./scripts/bench [-only e2e,ingest,drain,eos] [-flood 10000] [-delays 0,10ms] ...
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
	LogDir      string
	LogLevel    string // of the service processes
	TxnRecords  int
	TxnInterval time.Duration

	Concurrency int
	IngestFor   time.Duration

	EOSRecords  int
	EOSRounds   int
	EOSRoundFor time.Duration

	Rate   int
	E2EFor time.Duration

	Flood     int
	Instances []int
	Delays    []time.Duration

	Brokers     []string
	RegistryURL string
	Embedded    bool
}

var allSections = []string{"e2e", "ingest", "drain", "eos"}

func main() {
	var o Options
	only := flag.String("only", strings.Join(allSections, ","), "sections to run, comma-separated: "+strings.Join(allSections, ", "))
	flag.StringVar(&o.Shop, "shop", "bin/shop", "the shop binary (make build)")
	flag.StringVar(&o.LogDir, "logs", ".run/bench", "where the service processes' logs go")
	flag.StringVar(&o.LogLevel, "log-level", "info", "LOG_LEVEL of the service processes")
	flag.IntVar(&o.TxnRecords, "txn-records", target.EnvInt("TXN_MAX_RECORDS", 0), "most records per transaction, 0 for the default (env TXN_MAX_RECORDS)")
	flag.DurationVar(&o.TxnInterval, "txn-interval", target.EnvDuration("TXN_MAX_INTERVAL", 0), "commit interval, 0 for the default (env TXN_MAX_INTERVAL)")
	flag.IntVar(&o.Concurrency, "c", 64, "ingest: concurrent HTTP clients")
	flag.DurationVar(&o.IngestFor, "ingest-for", 10*time.Second, "ingest: how long")
	flag.IntVar(&o.EOSRecords, "eos-records", 600_000, "eos: records per round")
	flag.IntVar(&o.EOSRounds, "eos-rounds", 7, "eos: rounds of each mode; the figures are medians")
	flag.DurationVar(&o.EOSRoundFor, "eos-round-for", 3*time.Second, "eos: a round ends this long after its first commit, if it has not read every record by then")
	flag.IntVar(&o.Rate, "rate", 1000, "e2e: payments per second")
	flag.DurationVar(&o.E2EFor, "e2e-for", 15*time.Second, "e2e: how long")
	flag.IntVar(&o.Flood, "flood", 10_000, "drain: payments in the flood")
	instances := flag.String("instances", "1,3", "drain: order instance counts")
	delays := flag.String("delays", "0,10ms", "drain: PROCESSING_DELAY values")
	timeout := flag.Duration("timeout", 15*time.Minute, "give up after this long")
	flag.Parse()

	o.Sections = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if !contains(allSections, s) {
			fail("-only: no section %q (want %s)", s, strings.Join(allSections, ", "))
		}
		o.Sections[s] = true
	}
	for _, s := range strings.Split(*instances, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			fail("-instances: %q is not a count", s)
		}
		o.Instances = append(o.Instances, n)
	}
	for _, s := range strings.Split(*delays, ",") {
		if s == "0" {
			s = "0s"
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			fail("-delays: %v", err)
		}
		o.Delays = append(o.Delays, d)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	// The clients' own warnings go to stderr; progress goes to stdout.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

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

	if o.Sections["ingest"] || o.Sections["e2e"] || o.Sections["drain"] {
		if err := runServices(ctx, o, cat, p, res); err != nil {
			return res, err
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

// runServices runs the sections that need the services: e2e, ingest and
// drain, and reports each service's peak RSS.
func runServices(ctx context.Context, o Options, cat *schemas.Catalog, p *progress, res *Results) error {
	if err := os.MkdirAll(o.LogDir, 0o755); err != nil {
		return err
	}
	f := newFleet(o)
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

	p.Printf("starting payment, order, email and analytics as %s processes (logs in %s)", o.Shop, o.LogDir)
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
		if err := runE2E(ctx, o, payURL, w, p, res); err != nil {
			return fmt.Errorf("e2e: %w", err)
		}
	}
	if o.Sections["ingest"] {
		if err := runIngest(ctx, o, payURL, w, p, res); err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
	}
	if o.Sections["drain"] {
		if err := runDrain(ctx, o, cat, f, w, p, res); err != nil {
			return fmt.Errorf("drain: %w", err)
		}
	}
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(2)
}
