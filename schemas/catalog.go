package schemas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// The topics of the shop. Services reach them through a Catalog; these names
// are exported for operators' tools and topic creation.
const (
	TopicPayments   = "payment-successful"
	TopicOrders     = "order-created"
	TopicEmails     = "email-sent"
	TopicPaymentDLQ = "dlq-payment"
	TopicOrderDLQ   = "dlq-order"
)

// Topics lists every topic of the shop, inputs first.
var Topics = []string{TopicPayments, TopicOrders, TopicEmails, TopicPaymentDLQ, TopicOrderDLQ}

// Subject is the registry subject of a topic's values (TopicNameStrategy).
func Subject(topic string) string { return topic + "-value" }

// schemaFiles pairs each topic with the .avsc file of its values.
var schemaFiles = map[string]string{
	TopicPayments:   "payment_succeeded.avsc",
	TopicOrders:     "order_created.avsc",
	TopicEmails:     "email_sent.avsc",
	TopicPaymentDLQ: "dead_letter.avsc",
	TopicOrderDLQ:   "dead_letter.avsc",
}

// SchemaText returns the Avro schema of a topic's values as this build knows it.
func SchemaText(topic string) (string, error) {
	file, ok := schemaFiles[topic]
	if !ok {
		return "", fmt.Errorf("no schema for topic %q", topic)
	}
	b, err := avscFiles.ReadFile(file)
	return string(b), err
}

// Catalog is the one place services get their topics from: each field pairs
// a topic with its subject, its registered schema and its Go value type.
// Records are keyed by user_id, as a decimal string, so that one user's
// events stay in order on one partition.
type Catalog struct {
	Payments   *Codec[PaymentSucceeded] // payment-successful
	Orders     *Codec[OrderCreated]     // order-created
	Emails     *Codec[EmailSent]        // email-sent
	PaymentDLQ *Codec[DeadLetter]       // dlq-payment
	OrderDLQ   *Codec[DeadLetter]       // dlq-order
}

// NewCatalog registers every subject with the registry (idempotent: a schema
// already there keeps its ID), sets each subject's compatibility to BACKWARD,
// and returns codecs that write with the registered IDs.
func NewCatalog(ctx context.Context, registry *sr.Client) (*Catalog, error) {
	var (
		c   Catalog
		err error
	)
	if c.Payments, err = newCodec[PaymentSucceeded](ctx, registry, TopicPayments); err != nil {
		return nil, err
	}
	if c.Orders, err = newCodec[OrderCreated](ctx, registry, TopicOrders); err != nil {
		return nil, err
	}
	if c.Emails, err = newCodec[EmailSent](ctx, registry, TopicEmails); err != nil {
		return nil, err
	}
	if c.PaymentDLQ, err = newCodec[DeadLetter](ctx, registry, TopicPaymentDLQ); err != nil {
		return nil, err
	}
	if c.OrderDLQ, err = newCodec[DeadLetter](ctx, registry, TopicOrderDLQ); err != nil {
		return nil, err
	}
	return &c, nil
}

// Register puts the schema of topic under its subject with BACKWARD
// compatibility and returns the schema ID. Running it twice is harmless.
func Register(ctx context.Context, registry *sr.Client, topic string) (int, error) {
	text, err := SchemaText(topic)
	if err != nil {
		return 0, err
	}
	ss, err := RegisterText(ctx, registry, topic, text)
	return ss.ID, err
}

// RegisterText is Register with an Avro schema of the caller's, such as a
// new version read from a file. The registry refuses it (HTTP 409) if it
// breaks BACKWARD compatibility with the subject's latest version.
func RegisterText(ctx context.Context, registry *sr.Client, topic, text string) (sr.SubjectSchema, error) {
	subject := Subject(topic)
	for _, res := range registry.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatBackward}, subject) {
		if res.Err != nil {
			return sr.SubjectSchema{}, fmt.Errorf("set compatibility of %s: %w", subject, res.Err)
		}
	}
	ss, err := registry.CreateSchema(ctx, subject, sr.Schema{Schema: text, Type: sr.TypeAvro})
	if err != nil {
		return sr.SubjectSchema{}, fmt.Errorf("register %s: %w", subject, err)
	}
	return ss, nil
}

// avroConfig bounds what a hostile record can make a decoder allocate.
var avroConfig = avro.Config{
	TagKey:            "avro",
	MaxByteSliceSize:  1 << 20,
	MaxSliceAllocSize: 10_000,
}.Freeze()

// Readers and writers are pooled: a fresh avro.Reader allocates a 1 KiB slab
// for the strings it decodes, and avro.Marshal copies the body it returns,
// on every record. A pooled reader keeps carving its slab: strings already
// returned point into parts of it that are never written again.
var (
	readers = sync.Pool{New: func() any { return avro.NewReader(nil, 0, avro.WithReaderConfig(avroConfig)) }}
	writers = sync.Pool{New: func() any { return avro.NewWriter(nil, 512, avro.WithWriterConfig(avroConfig)) }}
)

// maxPooledWriter is the largest buffer a pooled writer keeps: one rare
// large record must not pin its buffer for good.
const maxPooledWriter = 64 << 10

// parse reads a schema with a cache of its own, so that two versions of one
// named record never overwrite each other in a shared cache.
func parse(text string) (avro.Schema, error) {
	return avro.ParseWithCache(text, "", &avro.SchemaCache{})
}

// Codec encodes and decodes the values of one topic in the Confluent wire
// format. It writes with the schema of this build and reads any schema
// registered under the topic's subject, resolving it to this build's type.
type Codec[T any] struct {
	topic    string
	subject  string
	id       int
	schema   avro.Schema
	registry *sr.Client

	dec sr.Serde // every writer ID met so far

	mu      sync.Mutex
	foreign map[int]*RecordError // IDs known to belong elsewhere
}

func newCodec[T any](ctx context.Context, registry *sr.Client, topic string) (*Codec[T], error) {
	text, err := SchemaText(topic)
	if err != nil {
		return nil, err
	}
	schema, err := parse(text)
	if err != nil {
		return nil, fmt.Errorf("schema of %s: %w", topic, err)
	}
	id, err := Register(ctx, registry, topic)
	if err != nil {
		return nil, err
	}
	c := &Codec[T]{
		topic:    topic,
		subject:  Subject(topic),
		id:       id,
		schema:   schema,
		registry: registry,
		foreign:  make(map[int]*RecordError),
	}
	c.dec.Register(id, new(T), sr.DecodeFn(c.decodeWith(schema)))
	return c, nil
}

func (c *Codec[T]) decodeWith(s avro.Schema) func([]byte, any) error {
	return func(b []byte, v any) error { return unmarshalExact(s, b, v) }
}

// unmarshalExact decodes b, which must hold exactly one value of schema s.
// avro.Unmarshal takes a body cut short for a valid one (it ignores EOF), and
// ignores trailing bytes: both are signs of a record that is not what its
// header claims, so both are errors here.
func unmarshalExact(s avro.Schema, b []byte, v any) error {
	r := readers.Get().(*avro.Reader)
	defer func() {
		r.Reset(nil) // keep no reference to the record
		r.Error = nil
		readers.Put(r)
	}()
	r.Reset(b)
	r.ReadVal(s, v)
	if r.Error != nil {
		if errors.Is(r.Error, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return r.Error
	}
	if r.Peek(); r.Error == nil {
		return errors.New("trailing bytes after the value")
	}
	return nil
}

// Topic is the topic this codec reads and writes.
func (c *Codec[T]) Topic() string { return c.topic }

// Subject is the registry subject of the topic's values.
func (c *Codec[T]) Subject() string { return c.subject }

// SchemaID is the registry ID this build writes with.
func (c *Codec[T]) SchemaID() int { return c.id }

// Encode returns v in the Confluent wire format: magic byte 0, the schema ID
// this build writes with in four big-endian bytes, then the Avro body.
func (c *Codec[T]) Encode(v *T) ([]byte, error) {
	w := writers.Get().(*avro.Writer)
	defer func() {
		if cap(w.Buffer()) <= maxPooledWriter {
			w.Error = nil
			writers.Put(w)
		}
	}()
	w.Reset(nil)
	w.WriteVal(c.schema, v)
	if w.Error != nil {
		return nil, w.Error
	}
	body := w.Buffer()
	out := make([]byte, 5+len(body))
	binary.BigEndian.PutUint32(out[1:5], uint32(c.id))
	copy(out[5:], body)
	return out, nil
}

// NewRegistryClient is a registry client with timeouts, so that a registry
// that hangs fails a request instead of a whole service.
func NewRegistryClient(url string) (*sr.Client, error) {
	return sr.NewClient(sr.URLs(url), sr.HTTPClient(&http.Client{Timeout: 10 * time.Second}))
}
