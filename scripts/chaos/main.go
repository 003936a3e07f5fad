// Command chaos proves exactly-once under faults. It runs three order and
// three email instances as separate processes, sends payments straight to
// Kafka, and while they flow kills a random instance with SIGKILL every 0.5
// to 2 seconds and restarts it. When the pipeline has drained it reads the
// topics with read_committed from where the run began and checks that every
// accepted payment has exactly one order, every order exactly one email, that
// nothing else is there, and that analytics agrees. The email instances
// deliver over SMTP through a proxy that chaos cuts every 1 to 3 seconds
// (one time in five an outage of 1 to 3 seconds); at the end chaos counts
// the mail server's messages by Message-ID: one distinct message per order,
// none missing, and the duplicates (resent after a kill or a cut) reported.
//
//	go run ./scripts/chaos [-n 10000] [-kills 20] [-seed 1] [-mode exactly-once|at-least-once] [-broker-kills=false] [-via kafka|http] [-keys=false] [-posts 3]
//
// With -via http the payments go through POST /payment to two payment
// instances, which are killed too: each payment is tried again after 400 ms
// without an answer (and one in five is posted to both instances at once)
// until a 200, with its Idempotency-Key; its cart's first item is named
// after it, so the check counts orders per payment whatever payment ID a
// try got. -posts 3 posts every payment three times at once, alternately
// to the two instances, before any retry. -keys=false sends no key: the
// control, whose retries must show as duplicates.
//
// With KAFKA_BROKERS set it runs against that cluster and SCHEMA_REGISTRY_URL;
// otherwise it starts its own embedded cluster on free ports, and its own
// mail server (infra/mailbox); against KAFKA_BROKERS the mail server is
// SMTP_ADDR (default localhost:1025, the Mailpit of make kafka-up) with its
// inbox at MAILPIT_URL (default http://localhost:8025). Against a
// cluster that scripts/kafka-up started (its PID files in .run/kafka) it also
// kills brokers: one at a time, with SIGKILL, each restarted a few seconds
// later by scripts/kafka-up in the background, the next kill only once the
// cluster is whole again. The last line is
// "exactly-once: in=N orders=N emails=N duplicates=0 lost=0 kills=K", where K
// counts instance and broker kills (the line above it splits them); the
// exit status is 1 on any violation. -mode at-least-once runs the same
// services without transactions: the control, which must report duplicates.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/target"
	"github.com/blackfriday-kafka/shop/services/email"
)

// Options of a run.
type Options struct {
	N         int
	MinKills  int
	Seed      uint64
	Mode      string // exactly-once or at-least-once
	Shop      string // path of the shop binary
	Instances int
	// Via is how payments come in: "kafka", written straight to
	// payment-successful, or "http", through POST /payment to payment
	// instances that are killed too, each payment retried until a 200,
	// with its Idempotency-Key unless Keys is false (the control).
	Via  string
	Keys bool
	// Posts is how often each payment is posted at once over HTTP, to the
	// instances in turn; 1 posts one in five twice.
	Posts   int
	LogDir  string
	Timeout time.Duration

	Brokers     []string
	RegistryURL string
	Embedded    bool
	// Secure is SECURE=1: chaos's own clients are the admin (Connect,
	// RegistryAuth), each instance its service's principal.
	Secure       bool
	Connect      []kgo.Opt
	RegistryAuth []sr.ClientOpt

	// Against KAFKA_BROKERS: the mail server and its inbox (Mailpit's
	// API). DeliverTo is what the instances dial: chaos's proxy to it.
	SMTPAddr, InboxURL string
	DeliverTo          string

	// BrokerKills kills and restarts the brokers of a cluster that
	// KafkaUp started, whose PID files are in KafkaRunDir.
	BrokerKills bool
	KafkaRunDir string
	KafkaUp     string
}

func main() {
	var o Options
	flag.IntVar(&o.N, "n", target.EnvInt("N", 10_000), "payments to send (env N)")
	flag.IntVar(&o.MinKills, "kills", target.EnvInt("KILLS", 20), "kill at least this many instances while payments flow (env KILLS)")
	seed := flag.Int64("seed", int64(target.EnvInt("SEED", 0)), "random seed; 0 picks one and prints it (env SEED)")
	flag.StringVar(&o.Mode, "mode", target.Env("MODE", "exactly-once"), "exactly-once, or at-least-once for the control (env MODE)")
	flag.StringVar(&o.Shop, "shop", "bin/shop", "the shop binary (make build)")
	flag.IntVar(&o.Instances, "instances", 3, "order and email instances each")
	flag.StringVar(&o.Via, "via", target.Env("VIA", "kafka"), "kafka: payments straight to Kafka; http: through POST /payment, two payment instances killed too (env VIA)")
	flag.BoolVar(&o.Keys, "keys", target.Env("KEYS", "1") == "1", "with -via http, send an Idempotency-Key; -keys=false is the control (env KEYS=0)")
	flag.IntVar(&o.Posts, "posts", target.EnvInt("POSTS", 1), "with -via http, post each payment this many times at once, to the instances in turn; 1 posts one in five twice (env POSTS)")
	flag.StringVar(&o.LogDir, "logs", ".run/chaos", "where the instances' logs go")
	flag.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "give up after this long")
	flag.BoolVar(&o.BrokerKills, "broker-kills", true, "against a cluster of scripts/kafka-up, also kill brokers, one at a time")
	flag.StringVar(&o.KafkaRunDir, "kafka-run", ".run/kafka", "where scripts/kafka-up keeps its PID files")
	flag.StringVar(&o.KafkaUp, "kafka-up", "scripts/kafka-up", "what restarts a killed broker")
	flag.StringVar(&o.SMTPAddr, "smtp", target.Env("SMTP_ADDR", "localhost:1025"), "against KAFKA_BROKERS, the mail server (env SMTP_ADDR)")
	flag.StringVar(&o.InboxURL, "inbox", target.Env("MAILPIT_URL", "http://localhost:8025"), "against KAFKA_BROKERS, its inbox, Mailpit's API (env MAILPIT_URL)")
	flag.Parse()
	if o.Mode != "exactly-once" && o.Mode != "at-least-once" {
		fail("-mode %q: want exactly-once or at-least-once", o.Mode)
	}
	if o.Posts < 1 {
		fail("-posts %d: want 1 or more", o.Posts)
	}
	if o.Via != "kafka" && o.Via != "http" {
		fail("-via %q: want kafka or http", o.Via)
	}
	o.Seed = uint64(*seed)
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	cluster, err := target.Cluster(ctx)
	if err != nil {
		fail("%v", err)
	}
	defer cluster.Close()
	o.Brokers, o.RegistryURL, o.Embedded = cluster.Brokers, cluster.RegistryURL, cluster.Embedded
	o.Secure, o.Connect, o.RegistryAuth = cluster.Secure, cluster.Connect, cluster.Registry

	v, kills, err := Run(ctx, o, os.Stdout)
	if err != nil {
		fail("%v", err)
	}
	fmt.Println(v.Line(kills))
	if !v.OK() {
		os.Exit(1)
	}
}

// Run runs the fleet, the payments and the kills, then checks the topics.
func Run(ctx context.Context, o Options, out *os.File) (Verdict, int, error) {
	announce(o, out)
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x5eed))
	reg, err := schemas.NewRegistryClient(o.RegistryURL, o.RegistryAuth...)
	if err != nil {
		return Verdict{}, 0, err
	}
	c := &chaos{o: o, out: out}
	if c.cat, err = schemas.Resolved(ctx, reg); err != nil {
		return Verdict{}, 0, err
	}
	// Only what this run writes is judged: the output topics are read
	// from where they end now.
	if c.from, err = infra.EndOffsets(ctx, o.Brokers, []string{schemas.Orders.Name, schemas.Emails.Name}, o.Connect...); err != nil {
		return Verdict{}, 0, err
	}
	if err := os.MkdirAll(o.LogDir, 0o755); err != nil {
		return Verdict{}, 0, err
	}
	if err := c.startMail(ctx); err != nil {
		return Verdict{}, 0, err
	}
	defer c.mail.close()
	if c.fleet, err = newFleet(c.o); err != nil {
		return Verdict{}, 0, err
	}
	if err := c.fleet.start(); err != nil {
		return Verdict{}, 0, err
	}
	defer c.fleet.stop()
	if c.brokers = c.brokerKills(rng); c.brokers != nil {
		defer func() {
			if err := c.brokers.finish(); err != nil {
				fmt.Fprintf(os.Stderr, "chaos: the cluster may be left with a broker down: %v\n", err)
			}
		}()
	}
	sendDone, err := c.send(ctx, rng)
	if err != nil {
		return Verdict{}, 0, err
	}
	defer c.sender.close()
	if c.watch, err = newWatch(ctx, c.cat, c.o, c.from); err != nil {
		return Verdict{}, 0, err
	}
	defer c.watch.close()
	return c.run(ctx, sendDone, rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())))
}

// announce says what the run is about to do.
func announce(o Options, out *os.File) {
	where := "embedded cluster " + strings.Join(o.Brokers, ",")
	if !o.Embedded {
		where = "cluster " + strings.Join(o.Brokers, ",")
	}
	if o.Secure {
		where += " in secure mode (SASL/SCRAM, ACLs; each instance its service's principal)"
	}
	fmt.Fprintf(out, "chaos: %d payments, %d order and %d email instances, %s, seed %d, on the %s\n",
		o.N, o.Instances, o.Instances, o.Mode, o.Seed, where)
	if o.Via != "http" {
		return
	}
	keys := "each with its Idempotency-Key"
	if !o.Keys {
		keys = "without Idempotency-Key (the control)"
	}
	posts := "one in five posted twice at once"
	if o.Posts > 1 {
		posts = fmt.Sprintf("each posted %d times at once", o.Posts)
	}
	fmt.Fprintf(out, "chaos: payments through POST /payment to %d payment instances, killed too, %s, %s, tried again after %s without an answer\n",
		paymentInstances, keys, posts, attemptTimeout)
}

// chaos is a run under way: what it started, and what it has seen.
type chaos struct {
	o       Options
	out     *os.File
	cat     *schemas.Catalog
	from    map[string]map[int32]kgo.Offset // where the output topics ended when the run began
	mail    *mailServer
	fleet   *fleet
	brokers *brokerChaos // nil without broker kills
	sender  payments
	watch   *watch

	start, lastReport, nextKill time.Time
	sending                     bool
	drainedAt, inboxAt          time.Time // when the topics drained; the last look at the inbox
}

// startMail starts the mail server, or its proxy to the one of the
// cluster, that the email instances deliver to.
func (c *chaos) startMail(ctx context.Context) error {
	// A generator of its own, so that a seed kills as it did before
	// chaos cut SMTP connections.
	mail, err := startMailServer(ctx, c.o, rand.New(rand.NewPCG(c.o.Seed^0x5e7d, c.o.Seed^0xc0de)))
	if err != nil {
		return err
	}
	c.mail, c.o.DeliverTo = mail, mail.proxy.addr()
	if mail.own != nil {
		fmt.Fprintf(c.out, "chaos: emails to an in-process mail server on %s (inbox %s), through a proxy on %s that cuts connections\n", mail.upstream, mail.own.URL, c.o.DeliverTo)
	} else {
		fmt.Fprintf(c.out, "chaos: emails to the mail server on %s (inbox %s), through a proxy on %s that cuts connections\n", mail.upstream, c.o.InboxURL, c.o.DeliverTo)
	}
	return nil
}

// brokerKills is what kills brokers, against a cluster of
// scripts/kafka-up; nil on any other.
func (c *chaos) brokerKills(rng *rand.Rand) *brokerChaos {
	if c.o.Embedded || !c.o.BrokerKills {
		return nil
	}
	nodes := findNodes(c.o.KafkaRunDir, c.o.Brokers)
	if len(nodes) < 3 {
		fmt.Fprintf(c.out, "chaos: no broker kills: no running nodes of scripts/kafka-up in %s for %s\n", c.o.KafkaRunDir, strings.Join(c.o.Brokers, ","))
		return nil
	}
	fmt.Fprintf(c.out, "chaos: also killing brokers: %d nodes of %s, one at a time, each restarted by %s\n", len(nodes), c.o.KafkaRunDir, c.o.KafkaUp)
	return newBrokerChaos(c.o, nodes, rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())))
}

// send starts sending the payments, paced so the kills land while they
// flow: a kill every 1.25 s on average, MinKills of them, with a fifth to
// spare. The channel says when they are all sent.
func (c *chaos) send(ctx context.Context, rng *rand.Rand) (<-chan error, error) {
	duration := time.Duration(float64(c.o.MinKills) * 1.25 * 1.2 * float64(time.Second))
	duration = max(duration, time.Duration(c.o.N)*time.Second/2000)
	if c.o.Via == "http" {
		if err := c.fleet.waitPayments(ctx); err != nil {
			return nil, err
		}
		c.sender = newHTTPSender(c.fleet.paymentURLs(), c.o.Keys, c.o.Posts)
	} else {
		c.sender = newSender(c.cat, c.o)
	}
	done := make(chan error, 1)
	seed := rng.Uint64()
	go func() { done <- c.sender.send(ctx, c.o.N, duration, seed) }()
	return done, nil
}

// kills counts the instance and broker kills.
func (c *chaos) kills() int {
	if c.brokers == nil {
		return c.fleet.kills
	}
	return c.fleet.kills + c.brokers.kills
}

// run kills while the payments flow, and once everything drained and the
// mail server has every email, stops the instances and judges.
func (c *chaos) run(ctx context.Context, sendDone <-chan error, killRng *rand.Rand) (Verdict, int, error) {
	c.nextKill = time.Now().Add(killDelay(killRng))
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	c.start, c.lastReport, c.sending = time.Now(), time.Now(), true
	for {
		select {
		case <-ctx.Done():
			return Verdict{}, c.kills(), fmt.Errorf("gave up: %w (%s)", ctx.Err(), c.watch.progress())
		case err := <-sendDone:
			if err != nil {
				return Verdict{}, c.kills(), fmt.Errorf("sending payments: %w", err)
			}
			c.sending = false
		case now := <-tick.C:
			drained, err := c.strike(now, killRng)
			if err != nil {
				return Verdict{}, c.kills(), err
			}
			if drained && c.fleet.kills >= c.o.MinKills && (c.brokers == nil || (c.brokers.idle() && c.brokers.kills > 0)) && c.inboxFull(ctx, now) {
				return c.judge(ctx)
			}
		}
	}
}

// strike does what one tick of the run does while it runs: it reaps the
// instances that died, kills one when its time came (while payments flow,
// or until MinKills), kills a broker, cuts SMTP connections while emails
// flow, and reports. It reports whether the pipeline has drained.
func (c *chaos) strike(now time.Time, killRng *rand.Rand) (bool, error) {
	if err := c.fleet.reap(); err != nil {
		return false, err
	}
	drained := !c.sending && c.watch.drained(c.sender.ids())
	if now.After(c.nextKill) && (!drained || c.fleet.kills < c.o.MinKills) {
		if err := c.fleet.killOne(killRng); err != nil {
			return false, err
		}
		c.nextKill = now.Add(killDelay(killRng))
	}
	brokerStatus := ""
	if c.brokers != nil {
		// Brokers die while payments flow, and at least once.
		did, err := c.brokers.step(now, !drained || c.brokers.kills == 0)
		if err != nil {
			return false, err
		}
		if did != "" {
			fmt.Fprintf(c.out, "  %5.1fs  %s\n", now.Sub(c.start).Seconds(), did)
		}
		brokerStatus = c.brokers.status()
	}
	if !drained {
		// Connections are cut while emails flow.
		if did := c.mail.step(now); did != "" {
			fmt.Fprintf(c.out, "  %5.1fs  %s\n", now.Sub(c.start).Seconds(), did)
		}
	}
	if now.Sub(c.lastReport) >= 2*time.Second {
		fmt.Fprintf(c.out, "  %5.1fs  sent %d/%d  %s  kills %d%s\n", now.Sub(c.start).Seconds(), c.sender.count(), c.o.N, c.watch.progress(), c.fleet.kills, brokerStatus)
		c.lastReport = now
	}
	return drained, nil
}

// inboxFull reports, once the topics drained, whether the mail server has
// every email, looking once a second; after inboxWait it gives up, and
// the emails still missing are reported lost.
func (c *chaos) inboxFull(ctx context.Context, now time.Time) bool {
	if c.drainedAt.IsZero() {
		c.drainedAt = now
		fmt.Fprintf(c.out, "  drained after %.1fs and %d kills; waiting for the mail server to have every email\n", time.Since(c.start).Seconds(), c.kills())
	}
	if now.Sub(c.inboxAt) < time.Second {
		return false
	}
	c.inboxAt = now
	missing, err := c.watch.undelivered(ctx, c.mail)
	if err != nil {
		fmt.Fprintf(os.Stderr, "  inbox: %v\n", err)
	}
	if err != nil || (missing > 0 && now.Sub(c.drainedAt) < inboxWait) {
		return false
	}
	fmt.Fprintf(c.out, "  every email on the mail server %.1fs later (%d missing); stopping the instances\n", now.Sub(c.drainedAt).Seconds(), missing)
	return true
}

// judge stops the instances, reads what the run committed and what the
// mail server got, and checks it.
func (c *chaos) judge(ctx context.Context) (Verdict, int, error) {
	c.fleet.stop()
	if h, ok := c.sender.(*httpSender); ok {
		fmt.Fprintf(c.out, "  http: %s\n", h.summary())
	}
	ledger, err := collect(ctx, c.cat, c.o, c.from, c.sender.ids())
	if err != nil {
		return Verdict{}, c.kills(), err
	}
	if ledger.Messages, err = c.mail.messages(ctx); err != nil {
		return Verdict{}, c.kills(), fmt.Errorf("reading the inbox: %w", err)
	}
	ledger.MessagesChecked = true
	v := Check(ledger, schemas.OrderID, schemas.EmailID, email.MessageID)
	v.Report(c.out)
	cuts, faults := c.mail.proxy.counts()
	smtpKills := fmt.Sprintf("%d SMTP connections cut in %d faults; %d of the instance kills hit email (stage and delivery loop)",
		cuts, faults, c.fleet.killsOf["email"])
	instances := "order and email instances"
	if c.o.Via == "http" {
		instances = fmt.Sprintf("payment, order and email instances (%d of payment)", c.fleet.killsOf["payment"])
	}
	if c.brokers != nil {
		fmt.Fprintf(c.out, "  kills: %d of %s, %d of brokers, %s (kills=%d below counts instances and brokers)\n", c.fleet.kills, instances, c.brokers.kills, smtpKills, c.kills())
	} else {
		fmt.Fprintf(c.out, "  kills: %d of %s, no broker, %s\n", c.fleet.kills, instances, smtpKills)
	}
	return v, c.kills(), nil
}

// payments sends the run's payments and says which were accepted: straight
// to Kafka (sender) or through POST /payment (httpSender).
type payments interface {
	send(ctx context.Context, n int, d time.Duration, seed uint64) error
	count() int
	ids() map[string]int64 // accepted payments, by the key orders are counted under
	close()
}

// paymentOf is the key under which an order is counted: the payment ID, or
// in HTTP mode the marker its cart's first item carries, the payment the
// client meant whatever ID a retry without a key gave it.
func (o Options) paymentOf(ord *schemas.OrderCreated) string {
	if o.Via == "http" && len(ord.Items) > 0 {
		return ord.Items[0].Name
	}
	return ord.PaymentID
}

// inboxWait bounds the wait for the mail server once the topics drained:
// an email still missing then is reported lost.
const inboxWait = 2 * time.Minute

func killDelay(rng *rand.Rand) time.Duration {
	return 500*time.Millisecond + time.Duration(rng.Int64N(int64(1500*time.Millisecond)))
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "chaos: "+format+"\n", args...)
	os.Exit(2)
}

var errStopped = errors.New("stopped")

func logPath(dir, name string) string { return filepath.Join(dir, name+".log") }
