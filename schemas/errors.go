package schemas

import "fmt"

// ErrorClass names why a record was refused. The values are part of the
// contract: they land in the DLQ's error_class field and error.class header.
type ErrorClass string

const (
	// BadMagicByte: the value does not start with the Confluent header
	// (byte 0, then a 4-byte schema ID), for example raw JSON.
	BadMagicByte ErrorClass = "bad-magic-byte"
	// UnknownSchemaID: the header names a schema ID the registry does not know.
	UnknownSchemaID ErrorClass = "unknown-schema-id"
	// WrongSubject: the schema ID exists but belongs to another topic's subject.
	WrongSubject ErrorClass = "wrong-subject"
	// AvroDecode: the body does not decode with the writer's schema.
	AvroDecode ErrorClass = "avro-decode"
	// Validation: the record decodes but breaks a business rule.
	Validation ErrorClass = "validation"
	// EmptyValue: the record has no value at all.
	EmptyValue ErrorClass = "empty-value"
	// ProduceRefused: Kafka refused what the record was turned into for
	// good (too large, invalid), so no retry could ever write it.
	ProduceRefused ErrorClass = "produce-refused"
	// SMTPRejected: the mail server refused a confirmation for good (a 5xx
	// reply), so no retry could deliver it.
	SMTPRejected ErrorClass = "smtp-rejected"
)

// ErrorClasses lists every class, so that each has a metric series from the
// start, at zero, rather than appearing with its first dead letter.
var ErrorClasses = []ErrorClass{BadMagicByte, UnknownSchemaID, WrongSubject, AvroDecode, Validation, EmptyValue, ProduceRefused, SMTPRejected}

// RecordError is a record that will never be processed, however often it is
// retried. Consumers route it to their dead letter queue.
type RecordError struct {
	Class ErrorClass
	Err   error
}

func (e *RecordError) Error() string { return string(e.Class) + ": " + e.Err.Error() }
func (e *RecordError) Unwrap() error { return e.Err }

// ErrorClass lets the dead-letter middleware recognise poison without
// knowing this package.
func (e *RecordError) ErrorClass() string { return string(e.Class) }

func refuse(class ErrorClass, format string, args ...any) *RecordError {
	return &RecordError{Class: class, Err: fmt.Errorf(format, args...)}
}

// FieldError is a payment rule that a payment breaks. Field is the path of the
// offending field as the HTTP API names it, such as "cart[2].price".
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }
