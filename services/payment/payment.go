// Package payment is the payment service: it takes payments over HTTP and
// writes each accepted one to payment-successful, answering only once Kafka
// has acknowledged the record on all in-sync replicas.
package payment

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/blackfriday-kafka/shop/infra/webserver"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/serve"
	"github.com/blackfriday-kafka/shop/txn/metrics"
	"github.com/blackfriday-kafka/shop/txn/store"
	"github.com/blackfriday-kafka/shop/txn/view"
)

// maxBody bounds a request: 100 items with 200-character names fit easily.
const maxBody = 1 << 20

// Service is the payment service.
type Service struct {
	cat       *schemas.Catalog
	payments  *schemas.Codec[schemas.PaymentSucceeded]
	producer  *kgo.Client
	state     *store.Store // the instance's state on disk: the ledger
	ledger    *ledger
	admission *Admission
	log       *slog.Logger
	kafka     prometheus.Collector // the producer's client metrics

	accepted prometheus.Counter
	replayed prometheus.Counter
	rejected *prometheus.CounterVec
	latency  prometheus.Histogram
}

// Options tune the payment service.
type Options struct {
	// DeliveryTimeout bounds how long a payment waits for Kafka before
	// the client gets a 503. Default 10s.
	DeliveryTimeout time.Duration
	// Admission bounds the payments held at once.
	Admission AdmissionOptions
}

// New connects the payment service's producer: idempotent, acks from all
// in-sync replicas, so a retried send never writes a payment twice.
//
// Each request produces its own record and waits for its acknowledgement,
// and the producer batches across requests: with no linger a record goes
// out at once when its broker has a free slot (the idempotent producer
// keeps up to five produce requests in flight per broker, franz-go's
// fixed setting), so a payment at low load waits for nothing; under load
// the records that come while five requests are out wait for the next one
// and go out together, in order per user key, one batch per partition. The
// batch is as large as the load makes it: on the 3-broker cluster of make
// kafka-up, 256 clients gave 8 to 9 records per produce request, and a
// linger of 2 or 5 ms did not make them larger (the slots are what holds
// records back) while it delays every payment at low load.
func New(cfg config.Config, cat *schemas.Catalog, opts Options) (*Service, error) {
	if opts.DeliveryTimeout <= 0 {
		opts.DeliveryTimeout = 10 * time.Second
	}
	admission := NewAdmission(opts.Admission)
	kafka := metrics.Kafka("producer")
	producer, err := kgo.NewClient(append(cfg.Kafka(),
		kgo.WithHooks(kafka),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(opts.DeliveryTimeout),
		kgo.ProducerLinger(0),
		// Room for every payment the admission bound lets in: an admitted
		// payment never waits for the buffer, only for Kafka.
		kgo.MaxBufferedRecords(admission.Max()),
	)...)
	if err != nil {
		return nil, err
	}
	log := cfg.Log().With("service", "payment", "instance", cfg.InstanceID)
	state, err := store.Open(cfg.StateDirOf("payment"), store.Options{CacheBytes: cfg.StateCache(), Log: log})
	if err != nil {
		producer.Close()
		return nil, err
	}
	requests, err := view.OpenTable(cfg.Brokers, schemas.PaymentRequests.Name, state.Memory(schemas.PaymentRequests.Name), log, cfg.Connect()...)
	if err != nil {
		producer.Close()
		state.Close()
		return nil, err
	}
	s := &Service{
		cat:       cat,
		payments:  schemas.Payments.Codec(cat),
		producer:  producer,
		admission: admission,
		state:     state,
		ledger:    &ledger{table: requests, window: cfg.Window(), log: log, inFlight: make(map[string]string)},
		kafka:     kafka,
		log:       log,
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shop_payments_accepted_total", Help: "Payments written to Kafka and acknowledged.",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shop_payments_replayed_total", Help: "Retries of an answered Idempotency-Key, answered again without writing anything.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shop_payments_rejected_total",
			Help: "Payments refused, by reason: invalid (400, 408 or 413), key_in_flight (409), key_reused (422, another body under the key) or kafka_unavailable (503); those refused for overload are shop_payments_shed_total.",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "shop_payment_ack_seconds", Help: "Time from request to Kafka acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	for _, reason := range []string{"invalid", "key_in_flight", "key_reused", "kafka_unavailable"} {
		s.rejected.WithLabelValues(reason) // a series at zero from the start
	}
	return s, nil
}

func (s *Service) Name() string { return "payment" }

// Admission is the bound on the payments the service holds at once.
func (s *Service) Admission() *Admission { return s.admission }

// Healthy is nil: a payment that cannot be written is refused with a 503,
// so the service is never stuck on one.
func (s *Service) Healthy() error { return nil }

func (s *Service) Collectors() []prometheus.Collector {
	return append([]prometheus.Collector{s.accepted, s.replayed, s.rejected, s.latency, s.kafka}, s.admission.Collectors()...)
}

func (s *Service) Routes(r *mux.Router) {
	r.HandleFunc("/payment", s.pay).Methods(http.MethodPost)
}

// Run looks up the schema payments are written with and follows the
// ledger of Idempotency-Keys until shutdown, then flushes and closes the
// producer; the HTTP server has stopped taking payments by then.
func (s *Service) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.ledger.table.Run(gctx) })
	g.Go(func() error { return s.ledger.sweep(gctx) })
	_ = s.cat.Await(ctx, s.log, schemas.Payments.Spec)
	<-ctx.Done()
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := s.producer.Flush(flushCtx)
	s.producer.Close()
	err = errors.Join(err, g.Wait())
	return errors.Join(err, s.state.Close())
}

// Ready is nil once the schema of payments is registered, the ledger of
// Idempotency-Keys is read, and Kafka answers.
func (s *Service) Ready(ctx context.Context) error {
	if err := s.cat.Missing(schemas.Payments.Spec); err != nil {
		return err
	}
	if !s.ledger.table.Ready() {
		return errors.New("still reading the answers to past Idempotency-Keys")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.producer.Ping(ctx)
}

// pay takes a payment: admitted within the bound, read, checked against
// its Idempotency-Key, written to Kafka and answered once acknowledged.
func (s *Service) pay(w http.ResponseWriter, r *http.Request) {
	t, ok := s.admission.admit(r.Context(), w)
	if !ok {
		return
	}
	outcome := ignored
	defer func() { t.done(outcome) }()
	req, ok := s.readPayment(w, r)
	if !ok {
		return
	}
	key, ok := s.claimKey(w, r, req)
	if !ok {
		return
	}
	if key.id != "" {
		defer s.ledger.release(key.ledger)
	}
	p := schemas.PaymentSucceeded{
		PaymentID:  key.paymentID(),
		UserID:     req.UserID,
		Cart:       req.Cart,
		TotalCents: schemas.CartTotal(req.Cart),
		PaidAt:     time.Now().UTC().Truncate(time.Millisecond),
	}
	if fe := schemas.ValidatePayment(&p); fe != nil {
		s.refuse(w, http.StatusBadRequest, fe)
		return
	}
	rec, ok := s.encode(w, &p)
	if !ok {
		return
	}
	if outcome = s.produce(w, r, rec, &p, key.id != ""); outcome != acknowledged {
		return
	}
	s.accepted.Inc()
	s.latency.Observe(time.Since(t.start).Seconds())
	s.log.Info("payment accepted",
		"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset,
		"payment_id", p.PaymentID, "user_id", p.UserID, "total", schemas.Euros(p.TotalCents).String())
	s.answer(w, r, answerOf(&p, rec), key)
}

// readPayment reads the request's body, at most maxBody of it within the
// server's read timeout, or answers why not.
func (s *Service) readPayment(w http.ResponseWriter, r *http.Request) (*Request, bool) {
	req, err := ReadRequest(http.MaxBytesReader(w, r.Body, maxBody))
	if err == nil {
		return req, true
	}
	var tooLarge *http.MaxBytesError
	var unread *ReadError
	switch {
	case errors.As(err, &tooLarge):
		s.refuse(w, http.StatusRequestEntityTooLarge, &schemas.FieldError{Field: "body", Reason: "must be at most 1 MiB"})
	case errors.As(err, &unread) && errors.Is(err, os.ErrDeadlineExceeded):
		s.refuse(w, http.StatusRequestTimeout, &schemas.FieldError{Field: "body",
			Reason: "was not received within " + webserver.ReadTimeout.String() + "; nothing was charged"})
	case errors.As(err, &unread):
		s.refuse(w, http.StatusBadRequest, &schemas.FieldError{Field: "body", Reason: "could not be read whole; nothing was charged"})
	default:
		s.refuse(w, http.StatusBadRequest, err.(*schemas.FieldError))
	}
	return nil, false
}

// idempotencyKey is a request's Idempotency-Key, if it has one.
type idempotencyKey struct {
	id          string // as the client sent it; "" without one
	ledger      string // the ledger's key: user and key
	fingerprint string
	userID      int64
}

// paymentID is the payment's ID: derived from the key, so that every try
// of it writes the same payment, or new.
func (k idempotencyKey) paymentID() string {
	if k.id == "" {
		return uuid.NewString()
	}
	return schemas.PaymentID(k.userID, k.id)
}

// claimKey reads the request's Idempotency-Key and claims it in the
// ledger, or answers: the past answer to a key already answered, a 409
// while another try of it waits for Kafka, a 422 for another body under it.
func (s *Service) claimKey(w http.ResponseWriter, r *http.Request, req *Request) (idempotencyKey, bool) {
	values := r.Header.Values(HeaderIdempotencyKey)
	if len(values) == 0 {
		return idempotencyKey{}, true
	}
	k, fe := parseKey(values[0])
	if fe == nil && len(values) > 1 {
		fe = &schemas.FieldError{Field: HeaderIdempotencyKey, Reason: "must be given once"}
	}
	if fe != nil {
		s.refuse(w, http.StatusBadRequest, fe)
		return idempotencyKey{}, false
	}
	key := idempotencyKey{id: k, ledger: ledgerKey(req.UserID, k), fingerprint: fingerprint(req), userID: req.UserID}
	switch replay, status := s.ledger.claim(key.ledger, key.fingerprint); status {
	case http.StatusOK:
		s.replayed.Inc()
		w.Header().Set("Idempotent-Replayed", "true")
		writeAnswer(w, replay)
		return key, false
	case http.StatusConflict:
		s.rejected.WithLabelValues("key_in_flight").Inc()
		serve.Error(w, status, "a request with this Idempotency-Key is still waiting for Kafka; retry once it is answered", HeaderIdempotencyKey)
		return key, false
	case http.StatusServiceUnavailable:
		s.rejected.WithLabelValues("kafka_unavailable").Inc()
		unavailable(w, "the answers to past Idempotency-Keys could not be read; nothing was charged; retry later")
		return key, false
	case http.StatusUnprocessableEntity:
		s.rejected.WithLabelValues("key_reused").Inc()
		serve.Error(w, status, "this Idempotency-Key was used for another payment; a retry must send the same body", HeaderIdempotencyKey)
		return key, false
	}
	return key, true
}

// encode turns the payment into its record, or answers why it cannot be.
func (s *Service) encode(w http.ResponseWriter, p *schemas.PaymentSucceeded) (*kgo.Record, bool) {
	rec, err := s.payments.Record(p)
	if _, missing := errors.AsType[*schemas.MissingSchemaError](err); missing {
		s.rejected.WithLabelValues("kafka_unavailable").Inc()
		unavailable(w, "payments are unavailable: "+err.Error()+"; nothing was charged")
		return nil, false
	}
	if err != nil {
		s.log.Error("encode payment", "payment_id", p.PaymentID, "err", err)
		serve.Error(w, http.StatusInternalServerError, "payment could not be encoded", "")
		return nil, false
	}
	return rec, true
}

// produce writes the payment and waits for Kafka's acknowledgement, or
// answers that it was not written. With the request's context, a client
// that hangs up before the record left cancels it; not with a key: its
// outcome must be known, so that the retry gets the same answer.
func (s *Service) produce(w http.ResponseWriter, r *http.Request, rec *kgo.Record, p *schemas.PaymentSucceeded, keyed bool) outcome {
	ctx := r.Context()
	if keyed {
		ctx = context.WithoutCancel(ctx)
	}
	err := s.producer.ProduceSync(ctx, rec).FirstErr()
	if err == nil {
		return acknowledged
	}
	s.rejected.WithLabelValues("kafka_unavailable").Inc()
	s.log.Warn("payment not written", "topic", rec.Topic, "payment_id", p.PaymentID, "user_id", p.UserID, "err", err)
	if errors.Is(err, context.Canceled) {
		// Client closed request; nobody reads this answer, and it says
		// nothing of Kafka.
		serve.Error(w, 499, "the client left before Kafka acknowledged the payment; nothing was charged", "")
		return ignored
	}
	unavailable(w, "payments are unavailable: Kafka did not acknowledge the payment, nothing was charged; retry later")
	return failed
}

// unavailable answers 503 for a payment Kafka or the registry could not
// take, with the same Retry-After as a refusal for overload.
func unavailable(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", retryAfterSeconds)
	serve.Error(w, http.StatusServiceUnavailable, msg, "")
}

// answerOf is the 200 body of an acknowledged payment: a Response as
// encoding/json writes it, appended by hand because it is written once per
// payment (reflection cost a tenth of a payment's time at the edge).
func answerOf(p *schemas.PaymentSucceeded, rec *kgo.Record) []byte {
	b := make([]byte, 0, 160+64*len(p.Cart))
	b = append(b, `{"status":"success","payment_id":`...)
	b = quote(b, p.PaymentID)
	b = strconv.AppendInt(append(b, `,"user_id":`...), p.UserID, 10)
	b = append(b, `,"cart":[`...)
	for i, it := range p.Cart {
		if i > 0 {
			b = append(b, ',')
		}
		b = quote(append(b, `{"name":`...), it.Name)
		b = schemas.Euros(it.UnitPriceCents).Append(append(b, `,"price":`...))
		b = strconv.AppendInt(append(b, `,"quantity":`...), int64(it.Quantity), 10)
		b = append(b, '}')
	}
	b = schemas.Euros(p.TotalCents).Append(append(b, `],"total":`...))
	b = quote(append(b, `,"topic":`...), rec.Topic)
	b = strconv.AppendInt(append(b, `,"partition":`...), int64(rec.Partition), 10)
	b = strconv.AppendInt(append(b, `,"offset":`...), rec.Offset, 10)
	return append(b, '}')
}

// quote appends s as a JSON string. The names it gets were read as valid
// UTF-8; anything else would be written as U+FFFD.
func quote(b []byte, s string) []byte {
	b, _ = jsontext.AppendQuote(b, s)
	return b
}

// answer writes the 200. With a key, the answer goes to the ledger before
// the client has it: an answered key is always replayed. If the ledger
// cannot be written, the payment is charged all the same; a retry then
// writes it again, and the order service drops the duplicate.
func (s *Service) answer(w http.ResponseWriter, r *http.Request, body []byte, key idempotencyKey) {
	if key.id != "" {
		if err := s.ledger.record(context.WithoutCancel(r.Context()), key.ledger, key.fingerprint, body); err != nil {
			s.log.Warn("answer to an Idempotency-Key not recorded", "user_id", key.userID, "err", err)
		}
	}
	writeAnswer(w, body)
}

// writeAnswer writes a 200 with body, a payment's answer as the ledger keeps it:
// a replay is the same to the byte.
func writeAnswer(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	_, _ = w.Write([]byte{'\n'})
}

// refuse answers status for a request that names the field it got wrong.
func (s *Service) refuse(w http.ResponseWriter, status int, fe *schemas.FieldError) {
	s.rejected.WithLabelValues("invalid").Inc()
	serve.Error(w, status, fe.Error(), fe.Field)
}
