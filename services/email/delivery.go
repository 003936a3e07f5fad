package email

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/txn"
	"github.com/blackfriday-kafka/shop/txn/deadletter"
	"github.com/blackfriday-kafka/shop/txn/kafkaclient"
	"github.com/blackfriday-kafka/shop/txn/loop"
	"github.com/blackfriday-kafka/shop/txn/metrics"
)

// CourierConfig configures the delivery loop. Brokers, SMTP.Addr and
// Catalog are required.
type CourierConfig struct {
	Brokers []string
	// Connect are the options any client needs to reach the cluster
	// besides Brokers (credentials), the same as the stage's.
	Connect    []kgo.Opt
	InstanceID string // its static member name is email-delivery-<InstanceID>
	SMTP       SMTP
	Catalog    *schemas.Catalog
	Logger     *slog.Logger

	// Backoff after a failed delivery doubles from MinBackoff to
	// MaxBackoff and resets after one that succeeds.
	MinBackoff, MaxBackoff time.Duration // default 100ms, 5s
	// Budget bounds the time one poll's emails take before the rest waits
	// for the next poll, so that a slow server never holds up a
	// rebalance or the progress commits for long.
	Budget time.Duration // default 500ms
	// Lanes is how many SMTP connections each partition of email-sent
	// delivers on side by side: the emails of one user keep to one lane,
	// in order. A mail server takes one message per connection at a
	// time, and each costs several round trips to it: one connection per
	// partition delivered a few hundred emails a second.
	Lanes int // default 8
	// StallAfter is how long delivery may fail before /healthz says so.
	StallAfter     time.Duration // default 1m
	SessionTimeout time.Duration // default 10s

	// crashAfterSend, set by tests, is asked after each message the
	// server took: true stops the loop there, as SIGKILL would, before
	// the offset commits.
	crashAfterSend func(*schemas.EmailSent) bool
}

func (c *CourierConfig) defaults() error {
	if len(c.Brokers) == 0 || c.SMTP.Addr == "" || c.Catalog == nil {
		return errors.New("email delivery: brokers, an SMTP address and a catalog are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.MinBackoff, 100*time.Millisecond)
	def(&c.MaxBackoff, 5*time.Second)
	def(&c.Budget, 500*time.Millisecond)
	def(&c.StallAfter, time.Minute)
	def(&c.SessionTimeout, 10*time.Second)
	if c.Lanes <= 0 {
		c.Lanes = 8
	}
	if c.InstanceID == "" {
		c.InstanceID = "1"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Courier is the delivery loop: after the email stage's transaction
// commits, it reads the outbox (email-sent, read_committed, so nothing of
// an aborted transaction is ever sent) in its own consumer group and hands
// each queued email to the mail server over SMTP, in order per partition.
// It commits an email's offset only once the email is proven delivered or
// dead-lettered, and its delivery record written: a crash in between
// sends it again, with the same Message-ID, which is the price of a
// boundary no Kafka transaction covers. A server that is down, slow or
// answers 4xx is retried with backoff, from the same email; a 5xx is a
// dead letter of class smtp-rejected on dlq-order, and delivery goes on.
type Courier struct {
	cfg  CourierConfig
	cl   *kgo.Client
	smtp map[int32][]*sender // Lanes connections per partition, so partitions and users go side by side
	// ahead are emails delivered and recorded beyond their partition's
	// committed offset, while another lane failed: the next cycle reads
	// them again, and must not send them again.
	ahead   map[int32]map[int64]bool
	codec   *schemas.Codec[schemas.EmailSent]
	letters deadletter.Letters
	log     *slog.Logger
	member  string
	poll    *loop.Poll
	// failures is since when deliveries fail, and what the log says of it.
	failures *loop.Failures

	kafka    prometheus.Collector
	outcomes *prometheus.CounterVec
	took     prometheus.Histogram
}

// errCrash stops the loop where a test asked it to crash.
var errCrash = errors.New("email delivery: crashed on purpose (test)")

// pollMax is the most emails taken from the client at a time: a cycle
// pays for writing its delivery records and committing its offsets once,
// which on a loaded real cluster takes up to a second, so a cycle must be
// able to carry more than a second's emails; Budget still bounds the work
// a kill would leave unproven.
const pollMax = 2000

// NewCourier connects the delivery loop; it starts when Run is called.
func NewCourier(cfg CourierConfig) (*Courier, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c := &Courier{
		cfg:    cfg,
		smtp:   make(map[int32][]*sender),
		ahead:  make(map[int32]map[int64]bool),
		codec:  schemas.Emails.Codec(cfg.Catalog),
		log:    cfg.Logger.With("loop", "delivery"),
		member: "email-delivery-" + cfg.InstanceID,
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shop_email_deliveries_total",
			Help: "Emails handed to the mail server by this instance, by outcome: delivered (250), rejected (5xx: a dead letter), retried (down, slow or 4xx: sent again later).",
		}, []string{"outcome"}),
		took: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shop_email_smtp_seconds",
			Help:    "Time the mail server takes to answer one message, MAIL to the reply after the final dot, connecting included when needed.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16), // 200µs to 6.5s
		}),
	}
	for _, o := range []string{Delivered, Rejected, "retried"} {
		c.outcomes.WithLabelValues(o)
	}
	c.letters = deadletter.Letters{Codec: schemas.OrderDLQ.Codec(cfg.Catalog), Service: "email", Logger: c.log}
	kafka := metrics.Kafka("delivery")
	c.kafka = kafka
	var err error
	c.cl, err = kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(schemas.DeliveryGroup),
		kgo.ConsumeTopics(schemas.Emails.Name),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// As the stages and views: a commit of the email stage
		// reaches this read_committed reader only with its next fetch.
		kgo.FetchMaxWait(kafkaclient.FetchMaxWait),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		// A restarted instance takes its partitions back at once.
		kgo.InstanceID(c.member),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(cfg.SessionTimeout / 10),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.WithHooks(kafka),
		kgo.OnPartitionsAssigned(c.logAssignment("assigned")),
		kgo.OnPartitionsRevoked(c.handOver("revoked")),
		kgo.OnPartitionsLost(c.handOver("lost")),
	}, cfg.Connect...)...)
	if err != nil {
		return nil, fmt.Errorf("email delivery: %w", err)
	}
	c.poll = &loop.Poll{Name: "email delivery", Client: func() *kgo.Client { return c.cl }, Max: pollMax, Log: c.log,
		MinBackoff: cfg.MinBackoff, MaxBackoff: cfg.MaxBackoff, Step: c.cycle, Polled: c.cl.AllowRebalance}
	c.failures = &loop.Failures{After: cfg.StallAfter, Log: c.log, Attrs: []any{"smtp", cfg.SMTP.Addr},
		Lines: loop.Lines{Begun: "delivery failing, retrying with backoff", Stalled: "delivery stalled", Ended: "delivery going again"}}
	return c, nil
}

func (c *Courier) logAssignment(what string) func(context.Context, *kgo.Client, map[string][]int32) {
	return func(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
		if len(parts) > 0 {
			c.log.Info("partitions "+what, "group", schemas.DeliveryGroup, "topic", schemas.Emails.Name, "partitions", parts[schemas.Emails.Name])
		}
	}
}

// handOver logs partitions taken away and closes their SMTP connections:
// another instance delivers them now. Rebalances wait for the loop between
// polls (BlockRebalanceOnPoll), so no send is using them.
func (c *Courier) handOver(what string) func(context.Context, *kgo.Client, map[string][]int32) {
	logged := c.logAssignment(what)
	return func(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
		logged(ctx, cl, parts)
		for _, p := range parts[schemas.Emails.Name] {
			for _, conn := range c.smtp[p] {
				conn.quit()
			}
			delete(c.smtp, p)
			delete(c.ahead, p) // the next owner sends them again, as after a crash
		}
	}
}

// Run delivers until ctx is cancelled, then commits what it delivered,
// leaves the group and returns nil. It returns an error only when it cannot
// go on: another instance took its member name.
func (c *Courier) Run(ctx context.Context) (err error) {
	defer func() {
		for _, lanes := range c.smtp {
			for _, conn := range lanes {
				conn.quit()
			}
		}
		c.cl.Close()
		if !errors.Is(err, errCrash) && !errors.Is(err, txn.ErrFenced) {
			kafkaclient.LeaveGroup(c.cfg.Brokers, c.cfg.Connect, schemas.DeliveryGroup, c.member, c.log)
		}
	}()
	if err := c.cfg.Catalog.Await(ctx, c.log, schemas.Emails.Spec, schemas.OrderDLQ.Spec); err != nil {
		return nil
	}
	c.log.Info("delivering", "smtp", c.cfg.SMTP.Addr, "group", schemas.DeliveryGroup, "member", c.member)
	err = c.poll.Run(ctx)
	if errors.Is(err, txn.ErrFenced) {
		return fmt.Errorf("email delivery: another instance is %s: %w", c.member, err)
	}
	return err
}

// partition is one partition's part of a cycle.
type partition struct {
	recs  []*kgo.Record
	next  int64 // after the last email proven delivered or dead-lettered; -1: none
	epoch int32
	stop  int64 // the first email left for the next poll; -1: none
	out   []*kgo.Record
	retry bool // an email failed: the next poll waits
	crash bool // a test's crash came
	lanes []*sender
	ahead map[int64]bool // c.ahead's, for this partition
}

// cycle delivers the emails of one poll, each partition on its own
// connections, side by side, in order for each user, until one fails or
// the budget is spent; then it writes their delivery records, commits the
// offsets they prove and rewinds each partition to its first email left.
// It reports whether an email failed, so that the next poll waits.
func (c *Courier) cycle(ctx context.Context, recs []*kgo.Record) (retry bool, err error) {
	if len(recs) == 0 {
		return false, nil
	}
	start := time.Now()
	parts := make(map[int32]*partition)
	for _, r := range recs {
		p := parts[r.Partition]
		if p == nil {
			lanes := c.smtp[r.Partition]
			if lanes == nil {
				lanes = make([]*sender, c.cfg.Lanes)
				for i := range lanes {
					lanes[i] = newSender(c.cfg.SMTP)
				}
				c.smtp[r.Partition] = lanes
			}
			ahead := c.ahead[r.Partition]
			if ahead == nil {
				ahead = make(map[int64]bool)
				c.ahead[r.Partition] = ahead
			}
			p = &partition{next: -1, stop: -1, lanes: lanes, ahead: ahead}
			parts[r.Partition] = p
		}
		p.recs = append(p.recs, r)
	}
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() { c.deliverAll(ctx, p, start) })
	}
	wg.Wait()

	var (
		produceMu  sync.Mutex
		produceErr error
	)
	wctx := context.WithoutCancel(ctx) // what was delivered is recorded, also at shutdown
	for _, p := range parts {
		if p.crash {
			return false, errCrash
		}
		retry = retry || p.retry
		for _, o := range p.out {
			c.cl.Produce(wctx, o, func(_ *kgo.Record, err error) {
				if err != nil {
					produceMu.Lock()
					produceErr = errors.Join(produceErr, err)
					produceMu.Unlock()
				}
			})
		}
	}

	// The delivery records first: a commit never runs ahead of what
	// /emails and the undelivered count show.
	flushCtx, cancel := context.WithTimeout(wctx, 30*time.Second)
	defer cancel()
	if err := c.cl.Flush(flushCtx); err != nil {
		produceErr = errors.Join(produceErr, err)
	}
	rewind := make(map[string]map[int32]kgo.EpochOffset)
	at := func(p int32, off int64) {
		if rewind[schemas.Emails.Name] == nil {
			rewind[schemas.Emails.Name] = make(map[int32]kgo.EpochOffset)
		}
		rewind[schemas.Emails.Name][p] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	if produceErr != nil {
		// Nothing of this cycle is recorded: all of it is sent again.
		c.log.Warn("delivery records not written; the emails of this poll will be sent again", "err", produceErr)
		c.failed(produceErr)
		for n, p := range parts {
			at(n, p.recs[0].Offset)
			delete(c.ahead, n) // not recorded either
		}
		c.cl.SetOffsets(rewind)
		return true, nil
	}
	// Progress only once the delivery records are written too: a loop
	// that sends but cannot record is failing, and says so once it has
	// failed for StallAfter.
	if !retry {
		c.progressed()
	}
	commit := make(map[string]map[int32]kgo.EpochOffset)
	for n, p := range parts {
		if p.next >= 0 {
			if commit[schemas.Emails.Name] == nil {
				commit[schemas.Emails.Name] = make(map[int32]kgo.EpochOffset)
			}
			commit[schemas.Emails.Name][n] = kgo.EpochOffset{Epoch: p.epoch, Offset: p.next}
		}
		if p.stop >= 0 {
			at(n, p.stop)
		}
	}
	if len(commit) > 0 {
		c.commit(flushCtx, commit)
	}
	c.cl.SetOffsets(rewind)
	return retry, nil
}

// deliverAll delivers p's emails, each user's in order on the lane its key
// picks, the lanes side by side. When the cycle's budget is spent or ctx
// ends, it cuts the partition after the last email a lane began: the lanes
// behind catch up to it, so the partition is done up to the cut and a
// graceful stop sends nothing twice. When an email fails, every lane stops
// at its next one, and the partition is done up to the first email a lane
// left: what other lanes delivered after it is remembered in p.ahead, so
// that the next cycle, which reads it again, does not send it again.
func (c *Courier) deliverAll(ctx context.Context, p *partition, start time.Time) {
	type lane struct {
		recs      []*kgo.Record
		left      int64 // the first email it left; -1: none
		out       []*kgo.Record
		delivered []int64
		retry     bool
		crash     bool
	}
	lanes := make([]lane, len(p.lanes))
	for i := range lanes {
		lanes[i].left = -1
	}
	for _, r := range p.recs {
		l := &lanes[laneOf(r.Key, len(lanes))]
		l.recs = append(l.recs, r)
	}
	var (
		mu      sync.Mutex
		halted  bool  // an email failed
		cut     int64 = math.MaxInt64
		begun   int64 = -1 // the highest offset a lane began
		proceed       = func(off int64) bool {
			mu.Lock()
			defer mu.Unlock()
			if cut == math.MaxInt64 && (ctx.Err() != nil || time.Since(start) > c.cfg.Budget) {
				cut = begun + 1
			}
			if halted || off >= cut {
				return false
			}
			begun = max(begun, off)
			return true
		}
		halt = func() { mu.Lock(); halted = true; mu.Unlock() }
	)
	// The emails a lane began go out also once shutdown began: the
	// cut, not the context, ends the cycle.
	dctx := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for i := range lanes {
		l, conn := &lanes[i], p.lanes[i]
		if len(l.recs) == 0 {
			continue
		}
		wg.Go(func() {
			for _, r := range l.recs {
				if p.ahead[r.Offset] {
					continue // delivered and recorded in an earlier cycle
				}
				if !proceed(r.Offset) {
					l.left = r.Offset
					return
				}
				e, out, err := c.deliver(dctx, conn, r)
				if err != nil {
					c.failed(err)
					l.retry, l.left = true, r.Offset
					halt()
					return
				}
				if e != nil && c.cfg.crashAfterSend != nil && c.cfg.crashAfterSend(e) {
					l.crash = true
					halt()
					return
				}
				l.out = append(l.out, out...)
				l.delivered = append(l.delivered, r.Offset)
			}
		})
	}
	wg.Wait()

	for _, l := range lanes {
		p.retry = p.retry || l.retry
		p.crash = p.crash || l.crash
		p.out = append(p.out, l.out...)
		if l.left >= 0 && (p.stop < 0 || l.left < p.stop) {
			p.stop = l.left
		}
	}
	if p.crash {
		return // the loop stops here, as SIGKILL would
	}
	// Every email before the first one left is delivered: each lane
	// went in order, and stopped only at the one it left.
	for _, r := range p.recs {
		if p.stop >= 0 && r.Offset >= p.stop {
			break
		}
		p.next, p.epoch = r.Offset+1, r.LeaderEpoch
	}
	for off := range p.ahead {
		if p.next >= 0 && off < p.next {
			delete(p.ahead, off) // committed now
		}
	}
	if p.stop < 0 {
		return
	}
	for _, l := range lanes {
		for _, off := range l.delivered {
			if off > p.stop {
				p.ahead[off] = true
			}
		}
	}
}

// laneOf is the lane of the emails with key (their user): the same for
// all of them, so that a user's emails go out in order.
func laneOf(key []byte, lanes int) int {
	h := fnv.New32a()
	_, _ = h.Write(key)
	return int(h.Sum32() % uint32(lanes))
}

// commit commits the offsets of delivered emails. A commit that fails is
// logged: the next one covers the same emails, and a crash before it sends
// them again.
func (c *Courier) commit(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset) {
	c.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err == nil {
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
						err = errors.Join(err, fmt.Errorf("partition %d: %w", p.Partition, perr))
					}
				}
			}
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("committing delivered offsets failed; a crash now would send them again", "err", err)
		}
	})
}

// deliver hands one email to the mail server and returns what records its
// outcome: the delivery record, and the dead letter of a rejection. e is
// the email when the server took it. An error means the email is to be
// sent again later.
func (c *Courier) deliver(ctx context.Context, conn *sender, r *kgo.Record) (sent *schemas.EmailSent, out []*kgo.Record, err error) {
	e, err := c.codec.Decode(ctx, r.Value)
	if err != nil {
		if p, ok := errors.AsType[deadletter.Poison](err); ok {
			// The stage wrote it, so this does not happen; if it
			// did, it would be no email to send.
			dl, err := c.letters.Record(r, p.ErrorClass(), err)
			if err != nil {
				return nil, nil, err
			}
			return nil, []*kgo.Record{dl}, nil
		}
		return nil, nil, err // the registry is down, say
	}
	if e.Status != Queued {
		return nil, nil, nil // recorded before the outbox ("sent"): not this loop's to send
	}
	t0 := time.Now()
	err = conn.send(ctx, From, e.To, Message(e))
	c.took.Observe(time.Since(t0).Seconds())
	del := Delivery{EmailID: e.EmailID, State: Delivered, Partition: r.Partition, Offset: r.Offset,
		MessageID: MessageID(e.EmailID), At: time.Now().UTC().Truncate(time.Millisecond)}
	var rejected *RejectedError
	switch {
	case err == nil:
		c.outcomes.WithLabelValues(Delivered).Inc()
		c.log.LogAttrs(ctx, slog.LevelInfo, "email delivered",
			slog.String("topic", r.Topic), slog.Int("partition", int(r.Partition)), slog.Int64("offset", r.Offset),
			slog.String("email_id", e.EmailID), slog.String("order_id", e.OrderID), slog.String("to", e.To))
		sent = e
	case errors.As(err, &rejected):
		c.outcomes.WithLabelValues(Rejected).Inc()
		c.log.Warn("email rejected by the mail server, to the dead letter queue",
			"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "email_id", e.EmailID, "to", e.To,
			"error_class", schemas.SMTPRejected, "reply", rejected.Reply)
		dl, err := c.letters.Record(r, string(schemas.SMTPRejected), err)
		if err != nil {
			return nil, nil, err
		}
		del.State, del.Reply = Rejected, rejected.Reply
		out = append(out, dl)
	default:
		c.outcomes.WithLabelValues("retried").Inc()
		return nil, nil, fmt.Errorf("email %s to %s: %w", e.EmailID, e.To, err)
	}
	rec, err := del.Record()
	if err != nil {
		return nil, nil, err
	}
	return sent, append(out, rec), nil
}

// failed notes a delivery that did not go through, and says so in the log:
// at once the first time, then once a minute.
func (c *Courier) failed(err error) { c.failures.Fail(-1, -1, err) }

// progressed notes a cycle without failure.
func (c *Courier) progressed() { c.failures.Progress() }

// Healthy is nil unless deliveries have failed for longer than StallAfter.
func (c *Courier) Healthy() error {
	if st, ok := c.failures.Stalled(); ok {
		return fmt.Errorf("email delivery to %s failing since %s: %s", c.cfg.SMTP.Addr, st.Since.UTC().Format(time.RFC3339), st.Reason)
	}
	return nil
}

// Ready reports whether the loop has reached the cluster.
func (c *Courier) Ready() bool { return c.poll.Ready() }

// Collectors are the loop's metrics.
func (c *Courier) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		c.outcomes, c.took, c.kafka,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_email_delivery_failing_since_seconds",
			Help: "Unix time since which this instance's deliveries fail (the mail server is down, slow or answers 4xx); 0 while they go through.",
		}, func() float64 {
			if since := c.failures.Since(); !since.IsZero() {
				return float64(since.Unix())
			}
			return 0
		}),
	}
}
