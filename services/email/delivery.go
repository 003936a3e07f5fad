package email

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/txn/deadletter"
	"github.com/blackfriday-kafka/shop/txn/metrics"
	"github.com/blackfriday-kafka/shop/txn/sink"
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
	// MaxBackoff and resets after one that succeeds; Budget bounds the
	// time one poll's emails take (sink.Config has the defaults).
	MinBackoff, MaxBackoff, Budget time.Duration
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
	if c.InstanceID == "" {
		c.InstanceID = "1"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Courier is the delivery loop, the shop's sink: after the email stage's
// transaction commits, it reads the outbox (email-sent, read_committed, so
// nothing of an aborted transaction is ever sent) in its own consumer group
// and hands each queued email to the mail server over SMTP, in order per
// user. It commits an email's offset only once the email is proven
// delivered or dead-lettered, and its delivery record written: a crash in
// between sends it again, with the same Message-ID. A server that is down,
// slow or answers 4xx is retried with backoff, from the same email; a 5xx
// is a dead letter of class smtp-rejected on dlq-order, and delivery goes
// on.
type Courier struct {
	cfg     CourierConfig
	sink    *sink.Sink
	codec   *schemas.Codec[schemas.EmailSent]
	letters deadletter.Letters
	log     *slog.Logger

	kafka    prometheus.Collector
	outcomes *prometheus.CounterVec
	took     prometheus.Histogram
}

// NewCourier connects the delivery loop; it starts when Run is called.
func NewCourier(cfg CourierConfig) (*Courier, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c := &Courier{
		cfg:   cfg,
		codec: schemas.Emails.Codec(cfg.Catalog),
		log:   cfg.Logger.With("loop", "delivery"),
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
	c.sink, err = sink.New(sink.Config{
		Name: "email delivery", To: cfg.SMTP.Addr, Attrs: []any{"smtp", cfg.SMTP.Addr},
		Brokers: cfg.Brokers, Connect: cfg.Connect, Opts: []kgo.Opt{kgo.WithHooks(kafka)},
		Group: schemas.DeliveryGroup, Topic: schemas.Emails.Name, Member: "email-delivery-" + cfg.InstanceID,
		Logger:  c.log,
		NewLane: func() sink.Lane { return &connection{c: c, conn: newSender(cfg.SMTP)} },
		Lanes:   cfg.Lanes,
		Await: func(ctx context.Context) error {
			return cfg.Catalog.Await(ctx, c.log, schemas.Emails.Spec, schemas.OrderDLQ.Spec)
		},
		MinBackoff: cfg.MinBackoff, MaxBackoff: cfg.MaxBackoff, Budget: cfg.Budget,
		StallAfter: cfg.StallAfter, SessionTimeout: cfg.SessionTimeout,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Run delivers until ctx is cancelled, then commits what it delivered,
// leaves the group and returns nil. It returns an error only when it cannot
// go on: another instance took its member name.
func (c *Courier) Run(ctx context.Context) error { return c.sink.Run(ctx) }

// connection is one SMTP connection of a partition of email-sent: one of
// the sink's lanes.
type connection struct {
	c    *Courier
	conn *sender
}

// Do delivers the email of r; a test's crash comes right after the server
// took it, before its offset commits.
func (l *connection) Do(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
	e, out, err := l.c.deliver(ctx, l.conn, r)
	if err == nil && e != nil && l.c.cfg.crashAfterSend != nil && l.c.cfg.crashAfterSend(e) {
		return nil, sink.ErrKilled
	}
	return out, err
}

func (l *connection) Close() { l.conn.quit() }

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

// Healthy is nil unless deliveries have failed for longer than StallAfter.
func (c *Courier) Healthy() error { return c.sink.Healthy() }

// Ready reports whether the loop has reached the cluster.
func (c *Courier) Ready() bool { return c.sink.Ready() }

// Collectors are the loop's metrics.
func (c *Courier) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		c.outcomes, c.took, c.kafka,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_email_delivery_failing_since_seconds",
			Help: "Unix time since which this instance's deliveries fail (the mail server is down, slow or answers 4xx); 0 while they go through.",
		}, func() float64 {
			if since := c.sink.FailingSince(); !since.IsZero() {
				return float64(since.Unix())
			}
			return 0
		}),
	}
}
