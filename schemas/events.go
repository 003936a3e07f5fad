// Package schemas is the shop's wire contract: what each topic holds, and how.
//
// The topic table (topics.go) pairs every topic with its registry subject,
// its Avro schema (the .avsc files beside this one, embedded in the binary),
// the Go type of its values and its key rule. A Catalog binds the table to a
// schema registry and gives each topic a codec for the Confluent wire
// format. The payment rules (validate.go) live here too, because the HTTP
// edge and the order service apply the same ones.
package schemas

import "time"

// CartItem is one line of a cart: what was bought, at what unit price, how many.
type CartItem struct {
	Name           string `avro:"name" json:"name"`
	UnitPriceCents int64  `avro:"unit_price_cents" json:"unit_price_cents"`
	Quantity       int32  `avro:"quantity" json:"quantity"`
}

// PaymentSucceeded is written by the payment service once a payment is
// accepted; it is the input of the order service.
type PaymentSucceeded struct {
	PaymentID  string     `avro:"payment_id" json:"payment_id"`
	UserID     int64      `avro:"user_id" json:"user_id"`
	Cart       []CartItem `avro:"cart" json:"cart"`
	TotalCents int64      `avro:"total_cents" json:"total_cents"`
	PaidAt     time.Time  `avro:"paid_at" json:"paid_at"`
}

// OrderItem is one line of an order, copied from the cart it came from.
type OrderItem struct {
	Name           string `avro:"name" json:"name"`
	UnitPriceCents int64  `avro:"unit_price_cents" json:"unit_price_cents"`
	Quantity       int32  `avro:"quantity" json:"quantity"`
}

// OrderCreated is written by the order service, one per payment.
type OrderCreated struct {
	OrderID    string      `avro:"order_id" json:"order_id"`
	PaymentID  string      `avro:"payment_id" json:"payment_id"`
	UserID     int64       `avro:"user_id" json:"user_id"`
	Items      []OrderItem `avro:"items" json:"items"`
	TotalCents int64       `avro:"total_cents" json:"total_cents"`
	Status     string      `avro:"status" json:"status"`
	CreatedAt  time.Time   `avro:"created_at" json:"created_at"`
}

// EmailSent is written by the email service, one per order.
type EmailSent struct {
	EmailID string    `avro:"email_id" json:"email_id"`
	OrderID string    `avro:"order_id" json:"order_id"`
	UserID  int64     `avro:"user_id" json:"user_id"`
	To      string    `avro:"to" json:"to"`
	Subject string    `avro:"subject" json:"subject"`
	Status  string    `avro:"status" json:"status"`
	SentAt  time.Time `avro:"sent_at" json:"sent_at"`
	// What the message says of the order (defaults of records written
	// before the outbox carried them: no lines, 0).
	Items      []OrderItem `avro:"items" json:"items"`
	TotalCents int64       `avro:"total_cents" json:"total_cents"`
}

// DeadLetter keeps a record that a consumer could not process, byte for byte,
// with where it came from and why it failed.
type DeadLetter struct {
	OriginalValue   []byte    `avro:"original_value" json:"original_value"`
	OriginalKey     []byte    `avro:"original_key" json:"original_key"`
	SourceTopic     string    `avro:"source_topic" json:"source_topic"`
	SourcePartition int32     `avro:"source_partition" json:"source_partition"`
	SourceOffset    int64     `avro:"source_offset" json:"source_offset"`
	ErrorClass      string    `avro:"error_class" json:"error_class"`
	Error           string    `avro:"error" json:"error"`
	Service         string    `avro:"service" json:"service"`
	FailedAt        time.Time `avro:"failed_at" json:"failed_at"`

	// A record too large to fit in a dead letter keeps only a prefix of
	// its value: Truncated says so, OriginalSize and OriginalSHA256
	// describe the whole value. Nil for a value kept whole.
	Truncated      bool    `avro:"truncated" json:"truncated"`
	OriginalSize   *int64  `avro:"original_size" json:"original_size,omitempty"`
	OriginalSHA256 *string `avro:"original_sha256" json:"original_sha256,omitempty"`
}

// PaymentDuplicate is written by the order service for a payment it did
// not turn into a second order.
type PaymentDuplicate struct {
	PaymentID       string    `avro:"payment_id" json:"payment_id"`
	UserID          int64     `avro:"user_id" json:"user_id"`
	TotalCents      int64     `avro:"total_cents" json:"total_cents"`
	SourcePartition int32     `avro:"source_partition" json:"source_partition"`
	SourceOffset    int64     `avro:"source_offset" json:"source_offset"`
	OrderOffset     int64     `avro:"order_offset" json:"order_offset"`
	DroppedAt       time.Time `avro:"dropped_at" json:"dropped_at"`
}

// Order statuses and email statuses written by this version of the shop.
const (
	OrderConfirmed = "confirmed"
	// EmailQueued: an email the email stage committed, for its delivery
	// loop to send over SMTP (versions before the loop wrote "sent").
	EmailQueued = "queued"
)
