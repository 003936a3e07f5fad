package schemas

import (
	"embed"
	"fmt"
	"slices"
	"strconv"

	"github.com/hamba/avro/v2"
)

//go:embed *.avsc
var avscFiles embed.FS

// The topic table: every topic of the shop, once, with the schema of its
// values and how its records are keyed. Services, tools and topic creation
// all take their topics from here; none spells a topic name or a subject.
var (
	Payments   = define[PaymentSucceeded]("payment-successful", "payment_succeeded.avsc", ByUser, Idempotent)
	Orders     = define[OrderCreated]("order-created", "order_created.avsc", ByUser, InTransactions)
	Emails     = define[EmailSent]("email-sent", "email_sent.avsc", ByUser, InTransactions)
	PaymentDLQ = define[DeadLetter]("dlq-payment", "dead_letter.avsc", BySource, InTransactions) // poison from payment-successful
	OrderDLQ   = define[DeadLetter]("dlq-order", "dead_letter.avsc", BySource, InTransactions)   // poison from order-created
	// Duplicates are the payments the order service dropped as already
	// ordered, so that analytics counts every payment once.
	Duplicates = define[PaymentDuplicate]("payment-duplicates", "payment_duplicate.avsc", ByUser, InTransactions)
)

// The state topics: compacted, internal to the shop, bytes that no schema
// describes and only the shop reads. A view's checkpoints, say.
var (
	AnalyticsCheckpoints = defineState("analytics-checkpoints", 1)
	OrderViewCheckpoints = defineState("order-view-checkpoints", 1)
	EmailViewCheckpoints = defineState("email-view-checkpoints", 1)
	// EmailDeliveries is what became of each email on the mail server,
	// by email_id: delivered or rejected (queued until then).
	EmailDeliveries = defineState("email-deliveries", 3)
	// PaymentRequests is what the payment service answered to each
	// Idempotency-Key, by user and key.
	PaymentRequests = defineState("payment-requests", 3)
)

// StateTopic is a row of the state topics.
type StateTopic struct {
	Name       string
	Partitions int32
}

var stateTable []StateTopic

func defineState(name string, partitions int32) StateTopic {
	t := StateTopic{Name: name, Partitions: partitions}
	stateTable = append(stateTable, t)
	return t
}

// StateTopics lists the state topics.
func StateTopics() []StateTopic { return slices.Clone(stateTable) }

// KeyRule is how a topic's records are keyed.
type KeyRule int

const (
	// ByUser keys a record by its user ID as a decimal string ("42"), so
	// that one user's payment, order and email share a partition and stay
	// in order.
	ByUser KeyRule = iota
	// BySource keeps the key of the record a dead letter stands for, byte
	// for byte.
	BySource
)

// Writes is how a topic's records are written.
type Writes int

const (
	// Idempotent: by an idempotent producer, one record at a time.
	Idempotent Writes = iota
	// InTransactions: by an exactly-once stage. Each transaction ends
	// with a commit marker, which takes an offset no consumer receives:
	// a group that has read everything stays one offset short of the end.
	InTransactions
)

func (k KeyRule) String() string {
	if k == ByUser {
		return "user_id as a decimal string"
	}
	return "the key of the source record"
}

// Spec is one row of the topic table.
type Spec struct {
	Name       string  // payment-successful
	Subject    string  // payment-successful-value: the registry subject of its values (TopicNameStrategy)
	SchemaFile string  // payment_succeeded.avsc, embedded in the binary
	ValueType  string  // shop.events.PaymentSucceeded, the Avro record of its values
	Key        KeyRule // how its records are keyed
	Writes     Writes  // how its records are written

	text     string
	schema   avro.Schema
	newCodec func(*Catalog) any
}

// Topic is a row of the table with the Go type of its values, so that a
// codec of payments only ever encodes payments.
type Topic[V any] struct{ *Spec }

var table []*Spec

func define[V any](name, file string, key KeyRule, writes Writes) Topic[V] {
	b, err := avscFiles.ReadFile(file)
	if err != nil {
		panic(err) // the embedded files are fixed at build time
	}
	schema, err := parse(string(b))
	if err != nil {
		panic(fmt.Sprintf("schema %s: %v", file, err))
	}
	s := &Spec{Name: name, Subject: Subject(name), SchemaFile: file, Key: key, Writes: writes, text: string(b), schema: schema}
	if named, ok := schema.(avro.NamedSchema); ok {
		s.ValueType = named.FullName()
	}
	s.newCodec = func(c *Catalog) any { return newCodec[V](c, s) }
	table = append(table, s)
	return Topic[V]{s}
}

// Subject is the registry subject of the values of topic, by the
// TopicNameStrategy every Confluent client uses: <topic>-value.
func Subject(topic string) string { return topic + "-value" }

// Text is the Avro schema of the topic's values as this build knows it.
func (s *Spec) Text() string { return s.text }

// Topics lists the table: the flow, then its dead letter queues and
// duplicates.
func Topics() []*Spec { return slices.Clone(table) }

// TopicNames are the names of every topic, in the order of Topics.
func TopicNames() []string {
	names := make([]string, len(table))
	for i, s := range table {
		names[i] = s.Name
	}
	return names
}

// Lookup finds a topic of the table by name.
func Lookup(name string) (*Spec, bool) {
	i := slices.IndexFunc(table, func(s *Spec) bool { return s.Name == name })
	if i < 0 {
		return nil, false
	}
	return table[i], true
}

// UserKey is the key of every record keyed ByUser.
func UserKey(userID int64) []byte { return strconv.AppendInt(nil, userID, 10) }

// userKeyed is a value keyed ByUser.
type userKeyed interface{ user() int64 }

func (p *PaymentSucceeded) user() int64 { return p.UserID }
func (o *OrderCreated) user() int64     { return o.UserID }
func (e *EmailSent) user() int64        { return e.UserID }
func (d *PaymentDuplicate) user() int64 { return d.UserID }

// key is the record key of value v on this topic.
func (s *Spec) key(v any) []byte {
	switch s.Key {
	case ByUser:
		return UserKey(v.(userKeyed).user())
	default:
		return v.(*DeadLetter).OriginalKey
	}
}
