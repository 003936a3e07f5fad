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

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/target"
	"github.com/blackfriday-kafka/shop/services/email"
)

// Options of a run.
type Options struct {
	N        int
	Faults   Faults
	MinKills int
	// MinPauses is the fewest pauses of order and email instances, every
	// third longer than their session and transaction timeouts.
	MinPauses int
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
	// RegistryVia, when set, is the registry's URL for the instances:
	// chaos's proxy in front of it, which a pause freezes.
	RegistryVia string

	// BrokerKills kills and restarts the brokers of a cluster that
	// KafkaUp started, whose PID files are in KafkaRunDir.
	BrokerKills bool
	KafkaRunDir string
	KafkaUp     string
}

func main() {
	var o Options
	flag.IntVar(&o.N, "n", target.EnvInt("N", 10_000), "payments to send (env N)")
	faults := flag.String("faults", target.Env("FAULTS", "kill"), "the faults, comma-separated: kill, pause, partition (env FAULTS)")
	flag.IntVar(&o.MinKills, "kills", target.EnvInt("KILLS", 20), "with kill, kill at least this many instances while payments flow (env KILLS)")
	flag.IntVar(&o.MinPauses, "pauses", target.EnvInt("PAUSES", 10), "with pause, pause at least this many order and email instances, every third for longer than their timeouts (env PAUSES)")
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
	var err error
	if o.Faults, err = parseFaults(*faults); err != nil {
		fail("-faults %v", err)
	}
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

	v, counts, err := Run(ctx, o, os.Stdout)
	if err != nil {
		fail("%v", err)
	}
	fmt.Println(v.Line(counts))
	if !v.OK() || !counts.whole {
		os.Exit(1)
	}
}

// Counts are the faults a run made, for its last line, and whether the
// cluster was whole at the end (true on the embedded cluster, which no
// fault strikes).
type Counts struct {
	Kills, Pauses, Partitions int
	whole                     bool
}

// Run runs the fleet, the payments and the faults, then checks the topics.
func Run(ctx context.Context, o Options, out *os.File) (Verdict, Counts, error) {
	announce(o, out)
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x5eed))
	reg, err := schemas.NewRegistryClient(o.RegistryURL, o.RegistryAuth...)
	if err != nil {
		return Verdict{}, Counts{}, err
	}
	c := &chaos{o: o, out: out, start: time.Now()}
	c.flog = newFaultLog(out, c.start)
	admin, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...)}, o.Connect...)...)
	if err != nil {
		return Verdict{}, Counts{}, err
	}
	defer admin.Close()
	c.admin = kadm.NewClient(admin)
	if c.cat, err = schemas.Resolved(ctx, reg); err != nil {
		return Verdict{}, Counts{}, err
	}
	// Only what this run writes is judged: the output topics are read
	// from where they end now.
	if c.from, err = infra.EndOffsets(ctx, o.Brokers, []string{schemas.Orders.Name, schemas.Emails.Name}, o.Connect...); err != nil {
		return Verdict{}, Counts{}, err
	}
	if err := os.MkdirAll(o.LogDir, 0o755); err != nil {
		return Verdict{}, Counts{}, err
	}
	// Each run's instances start without state on disk, and keep it
	// across their kills; a store of another run would be rebuilt anyway.
	if err := os.RemoveAll(filepath.Join(o.LogDir, "state")); err != nil {
		return Verdict{}, Counts{}, err
	}
	if err := c.startMail(ctx); err != nil {
		return Verdict{}, Counts{}, err
	}
	defer c.mail.close()
	if err := c.dependencies(); err != nil {
		return Verdict{}, Counts{}, err
	}
	defer c.wakeDependencies()
	if c.fleet, err = newFleet(c.o); err != nil {
		return Verdict{}, Counts{}, err
	}
	if err := c.fleet.start(); err != nil {
		return Verdict{}, Counts{}, err
	}
	defer c.fleet.stop()
	if o.Faults.Pause {
		c.pauser = newPauser(c.fleet, c.flog, rand.New(rand.NewPCG(o.Seed^0x57_0b, o.Seed^0xc0_47)))
		defer c.pauser.wakeAll()
	}
	if c.brokers, err = c.brokerChaos(rng); err != nil {
		return Verdict{}, Counts{}, err
	}
	if c.brokers != nil {
		defer func() {
			if err := c.brokers.finish(); err != nil {
				fmt.Fprintf(os.Stderr, "chaos: the cluster may be left with a broker down: %v\n", err)
			}
		}()
	}
	sendDone, err := c.send(ctx, rng)
	if err != nil {
		return Verdict{}, Counts{}, err
	}
	defer c.sender.close()
	if c.watch, err = newWatch(ctx, c.cat, c.o, c.from); err != nil {
		return Verdict{}, Counts{}, err
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
	var faults []string
	if o.Faults.Kill {
		faults = append(faults, fmt.Sprintf("SIGKILL of instances (at least %d)", o.MinKills))
	}
	if o.Faults.Pause {
		faults = append(faults, fmt.Sprintf("SIGSTOP of order and email instances (at least %d, every third longer than the %s session and transaction timeouts), of the registry and of the mail server (%s each)",
			o.MinPauses, zombieAfter, dependencyPause))
	}
	if o.Faults.Partition {
		faults = append(faults, "a broker cut off from the others and from the shop")
	}
	fmt.Fprintf(out, "chaos: faults %s: %s\n", o.Faults, strings.Join(faults, "; "))
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
	brokers *brokerChaos // nil without broker faults
	pauser  *pauser      // nil without pauses
	deps    []*dependency
	flog    *faultLog
	sender  payments
	watch   *watch

	start, lastReport, nextKill time.Time
	sending                     bool
	drainedAt, inboxAt          time.Time // when the topics drained; the last look at the inbox
	progress                    string    // the watch's last progress, and since when
	progressAt                  time.Time
	lastFault, askedAt          time.Time    // for calm: the last fault's end, the last look at the groups
	stable                      bool         // what that look found
	admin                       *kadm.Client // the groups' states, for calm and reports
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

// brokerChaos is what strikes brokers, against a cluster of
// scripts/kafka-up; nil on any other, or when no broker fault is asked for.
func (c *chaos) brokerChaos(rng *rand.Rand) (*brokerChaos, error) {
	f := c.o.Faults
	f.Kill = f.Kill && c.o.BrokerKills
	if c.o.Embedded || f == (Faults{}) {
		if c.o.Embedded && c.o.Faults.Partition {
			return nil, errors.New("FAULTS=partition cuts a broker of make kafka-up off; the embedded cluster runs in chaos's own process (set KAFKA_BROKERS)")
		}
		return nil, nil
	}
	nodes := findNodes(c.o.KafkaRunDir, c.o.Brokers)
	if len(nodes) < 3 {
		if f.Partition {
			return nil, fmt.Errorf("FAULTS=partition: no running nodes of scripts/kafka-up in %s for %s", c.o.KafkaRunDir, strings.Join(c.o.Brokers, ","))
		}
		fmt.Fprintf(c.out, "chaos: no broker faults: no running nodes of scripts/kafka-up in %s for %s\n", c.o.KafkaRunDir, strings.Join(c.o.Brokers, ","))
		return nil, nil
	}
	if f.Partition {
		for _, n := range nodes {
			if _, err := nodeLink(c.o.KafkaRunDir, n.id); err != nil {
				return nil, err
			}
		}
	}
	o := c.o
	o.Faults = f
	var what []string
	for _, k := range []struct {
		on   bool
		what string
	}{{f.Kill, "killed (each restarted by " + c.o.KafkaUp + ")"}, {f.Pause, "paused"}, {f.Partition, "cut off"}} {
		if k.on {
			what = append(what, k.what)
		}
	}
	fmt.Fprintf(c.out, "chaos: brokers too: %d nodes of %s, one at a time, %s\n", len(nodes), c.o.KafkaRunDir, strings.Join(what, ", "))
	return newBrokerChaos(o, nodes, rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())), c.flog), nil
}

// dependencies sets up the pauses of the registry and of the mail server:
// the processes of make kafka-up, or, on the embedded stack, proxies in
// front of chaos's own, which the instances then go through.
func (c *chaos) dependencies() error {
	if !c.o.Faults.Pause {
		return nil
	}
	reg := &dependency{name: "registry"}
	mail := &dependency{name: "mail server", proxy: c.mail.proxy}
	if !c.o.Embedded {
		reg.pid = max(kafkaUpPID(c.o.KafkaRunDir, "registry", "registry"), kafkaUpPID(c.o.KafkaRunDir, "apicurio", "quarkus-run.jar"))
		mail.pid = kafkaUpPID(c.o.KafkaRunDir, "mailpit", "mailpit")
	}
	if reg.pid == 0 {
		p, via, err := registryProxy(c.o.RegistryURL)
		if err != nil {
			return err
		}
		reg.proxy, c.o.RegistryVia = p, via
	}
	c.deps = []*dependency{reg, mail}
	for _, d := range c.deps {
		fmt.Fprintf(c.out, "chaos: %s paused for %s once (%s)\n", d.name, dependencyPause, d.how())
	}
	return nil
}

func (c *chaos) wakeDependencies() {
	for _, d := range c.deps {
		d.wake(c.flog)
		if d.proxy != nil && d.name == "registry" {
			d.proxy.close()
		}
	}
}

// send starts sending the payments, paced so the kills land while they
// flow: a kill every 1.25 s on average, MinKills of them, with a fifth to
// spare. The channel says when they are all sent.
func (c *chaos) send(ctx context.Context, rng *rand.Rand) (<-chan error, error) {
	var duration time.Duration
	if c.o.Faults.Kill {
		duration = time.Duration(float64(c.o.MinKills) * 1.25 * 1.2 * float64(time.Second))
	}
	if c.o.Faults.Pause {
		// A pause begins every 2 s or so, one instance of each
		// service at a time, and every third lasts some 16 s; the
		// registry and the mail server are paused while payments flow.
		duration = max(duration, time.Duration(c.o.MinPauses)*4*time.Second, 2*dependencyPause+10*time.Second)
	}
	if c.brokers != nil {
		// A broker's fault and the wait for its replicas to be in
		// sync again take some 25 s, and they come one at a time:
		// the payments flow while the fewest of each kind are made.
		n := 0
		for _, k := range c.brokers.kinds() {
			n += brokerMinimum[k]
		}
		duration = max(duration, time.Duration(n)*25*time.Second)
	}
	duration = max(duration, time.Duration(c.o.N)*time.Second/2000)
	for i, d := range c.deps {
		// The registry at a fifth of the way, the mail server at half.
		d.at = time.Now().Add(duration * time.Duration(1+3*i) / 5)
	}
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

// counts are the faults made so far.
func (c *chaos) counts() Counts {
	n := Counts{Kills: c.fleet.kills, whole: true}
	n.Pauses, _ = c.flog.count("pause", 0)
	n.Partitions, _ = c.flog.count("partition", 0)
	if c.brokers != nil {
		n.Kills += c.brokers.kills
	}
	return n
}

// run makes faults while the payments flow, and once everything drained,
// every fault is over and the mail server has every email, stops the
// instances and judges.
func (c *chaos) run(ctx context.Context, sendDone <-chan error, killRng *rand.Rand) (Verdict, Counts, error) {
	c.nextKill = time.Now().Add(killDelay(killRng))
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	c.lastReport, c.sending = time.Now(), true
	for {
		select {
		case <-ctx.Done():
			return Verdict{}, c.counts(), fmt.Errorf("gave up: %w (%s)", ctx.Err(), c.watch.progress())
		case err := <-sendDone:
			if err != nil {
				return Verdict{}, c.counts(), fmt.Errorf("sending payments: %w", err)
			}
			c.sending = false
		case now := <-tick.C:
			drained, err := c.strike(now, killRng)
			if err != nil {
				return Verdict{}, c.counts(), err
			}
			if drained && c.faultsDone() && c.inboxFull(ctx, now) {
				return c.judge(ctx)
			}
		}
	}
}

// faultsDone is true once the run made the fewest faults of each kind it
// was asked for, and none is on.
func (c *chaos) faultsDone() bool {
	if c.o.Faults.Kill && c.fleet.kills < c.o.MinKills {
		return false
	}
	if c.pauser != nil && (!c.pauser.idle() || c.pauser.count < c.o.MinPauses) {
		return false
	}
	for _, d := range c.deps {
		if !d.done {
			return false
		}
	}
	return c.brokers == nil || (c.brokers.idle() && c.brokers.done())
}

// strike does what one tick of the run does while it runs: it reaps the
// instances that died, kills one when its time came (while payments flow,
// or until MinKills), pauses and wakes instances, the registry and the mail
// server, strikes a broker, cuts SMTP connections while emails flow, and
// reports. It reports whether the pipeline has drained.
func (c *chaos) strike(now time.Time, killRng *rand.Rand) (bool, error) {
	if err := c.fleet.reap(); err != nil {
		return false, err
	}
	drained := !c.sending && c.watch.drained(c.sender.ids())
	// On the embedded cluster, where faults come one at a time, a
	// dependency whose time came goes first.
	mayStrike := !c.o.Embedded || !c.dependencyDue(now)
	if c.o.Faults.Kill && now.After(c.nextKill) && (!drained || c.fleet.kills < c.o.MinKills) && mayStrike && c.calm(now) {
		if err := c.fleet.killOne(killRng, c.flog); err != nil {
			return false, err
		}
		c.nextKill = now.Add(killDelay(killRng))
		c.faultEnded(now)
	}
	if c.pauser != nil {
		// Instances are paused while payments are sent, and until
		// MinPauses: pausing on until the pipeline drains would hold
		// their groups in rebalances, one member always away.
		was := c.pauser.idle()
		if err := c.pauser.step(now, (c.sending || c.pauser.count < c.o.MinPauses) && mayStrike && c.calm(now)); err != nil {
			return false, err
		}
		if !was && c.pauser.idle() {
			c.faultEnded(now)
		}
	}
	mailPaused := false
	for _, d := range c.deps {
		was := d.pausing()
		if err := d.step(now, c.flog, was || c.calm(now)); err != nil {
			return false, err
		}
		if was && !d.pausing() {
			c.faultEnded(now)
		}
		mailPaused = mailPaused || (d.pausing() && d.proxy == c.mail.proxy)
	}
	brokerStatus := ""
	if c.brokers != nil {
		// Brokers are struck while payments flow, and until each kind
		// of fault was made its fewest times.
		if err := c.brokers.step(now, !drained || !c.brokers.done()); err != nil {
			return false, err
		}
		brokerStatus = c.brokers.status()
	}
	if !drained && !mailPaused {
		// Connections are cut while emails flow.
		if did := c.mail.step(now); did != "" {
			fmt.Fprintf(c.out, "  %5.1fs  %s\n", now.Sub(c.start).Seconds(), did)
		}
	}
	if p := c.watch.progress(); p != c.progress || drained {
		c.progress, c.progressAt = p, now
	} else if now.Sub(c.progressAt) > stuckAfter {
		return false, fmt.Errorf("no order or email for %s, %s; the groups: %s (on the embedded cluster, see docs/real-kafka.md on groups wedged by pauses)",
			stuckAfter, p, c.groups())
	}
	if now.Sub(c.lastReport) >= 2*time.Second {
		n := c.counts()
		fmt.Fprintf(c.out, "  %5.1fs  sent %d/%d  %s  kills %d  pauses %d  partitions %d%s\n", now.Sub(c.start).Seconds(), c.sender.count(), c.o.N, c.watch.progress(),
			c.fleet.kills, n.Pauses, n.Partitions, brokerStatus)
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
		n := c.counts()
		fmt.Fprintf(c.out, "  drained after %.1fs, %d kills, %d pauses and %d partitions; waiting for the mail server to have every email\n",
			time.Since(c.start).Seconds(), n.Kills, n.Pauses, n.Partitions)
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
	if missing > 0 {
		fmt.Fprintf(c.out, "  the groups: %s\n", c.groups())
	}
	fmt.Fprintf(c.out, "  every email on the mail server %.1fs later (%d missing); stopping the instances\n", now.Sub(c.drainedAt).Seconds(), missing)
	return true
}

// stuckAfter is how long the run waits for an order or an email while
// payments wait before it gives up, naming the groups' states.
const stuckAfter = 2 * time.Minute

// judge stops the instances, reads what the run committed and what the
// mail server got, and checks it.
func (c *chaos) judge(ctx context.Context) (Verdict, Counts, error) {
	c.fleet.stop()
	if h, ok := c.sender.(*httpSender); ok {
		fmt.Fprintf(c.out, "  http: %s\n", h.summary())
	}
	ledger, err := collect(ctx, c.cat, c.o, c.from, c.sender.ids())
	if err != nil {
		return Verdict{}, c.counts(), err
	}
	if ledger.Messages, err = c.mail.messages(ctx); err != nil {
		return Verdict{}, c.counts(), fmt.Errorf("reading the inbox: %w", err)
	}
	ledger.MessagesChecked = true
	v := Check(ledger, schemas.OrderID, schemas.EmailID, email.MessageID)
	c.flog.report(c.out)
	v.Report(c.out)
	n := c.counts()
	cuts, faults := c.mail.proxy.counts()
	smtpKills := fmt.Sprintf("%d SMTP connections cut in %d faults; %d of the instance kills hit email (stage and delivery loop)",
		cuts, faults, c.fleet.killsOf["email"])
	instances := "order and email instances"
	if c.o.Via == "http" {
		instances = fmt.Sprintf("payment, order and email instances (%d of payment)", c.fleet.killsOf["payment"])
	}
	if c.brokers != nil {
		fmt.Fprintf(c.out, "  kills: %d of %s, %d of brokers, %s (kills=%d below counts instances and brokers)\n", c.fleet.kills, instances, c.brokers.kills, smtpKills, n.Kills)
	} else {
		fmt.Fprintf(c.out, "  kills: %d of %s, no broker, %s\n", c.fleet.kills, instances, smtpKills)
	}
	if c.pauser != nil || c.brokers != nil {
		pauses := "none of instances"
		if c.pauser != nil {
			pauses = fmt.Sprintf("%d of order and email instances, %d of them longer than the %s session and transaction timeouts; the registry and the mail server %s each",
				c.pauser.count, c.pauser.long, zombieAfter, dependencyPause)
		}
		brokers := "no broker"
		if c.brokers != nil {
			brokers = fmt.Sprintf("%d of brokers", c.brokers.pauses)
		}
		fmt.Fprintf(c.out, "  pauses: %s; %s (pauses=%d below counts them all); partitions: %d of brokers\n", pauses, brokers, n.Pauses, n.Partitions)
	}
	if !c.o.Embedded {
		n.whole = c.inSync(ctx)
	}
	return v, n, nil
}

// inSync checks and says that the cluster is whole at the end: every
// partition of every topic with all its replicas in sync. A broker
// recovering from the last fault gets a minute.
func (c *chaos) inSync(ctx context.Context) bool {
	err := waitInSync(c.o.Brokers, c.o.Connect, time.Minute)
	short, parts, lerr := infra.OutOfSync(ctx, c.o.Brokers, c.o.Connect...)
	switch {
	case lerr != nil:
		fmt.Fprintf(c.out, "  in-sync replicas: cannot tell: %v\n", lerr)
		return false
	case err != nil || len(short) > 0:
		fmt.Fprintf(c.out, "  in-sync replicas: %d of %d partitions short at the end, such as %s\n", len(short), parts, strings.Join(short[:min(3, len(short))], "; "))
		return false
	}
	fmt.Fprintf(c.out, "  in-sync replicas: all %d partitions of every topic, Kafka's own included, have every replica in sync at the end\n", parts)
	return true
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
