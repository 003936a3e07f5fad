// Package deadletter is the dead-letter path of the shop's exactly-once
// stages: a middleware that turns a record which can never be processed
// into a dead letter, an ordinary output of the same transaction, that
// always fits its topic.
//
// A dead letter keeps the original key and value byte for byte, with the
// reason in the DeadLetter value and in headers. One too large to keep whole
// (a near-1 MB value that did not decode, say) keeps a prefix, with the size
// and SHA-256 of the whole value: a dead letter Kafka refused would abort
// its transaction forever, and stop the partition behind it.
package deadletter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/txn"
)

// Poison is an error for a record that will fail however often it is
// retried. ErrorClass says why, in the vocabulary of the DLQ.
type Poison interface {
	error
	ErrorClass() string
}

// Headers of a dead letter: the reason travels with the record, readable
// without Avro.
const (
	HeaderErrorClass      = "error.class"
	HeaderErrorMessage    = "error.message"
	HeaderSourceTopic     = "source.topic"
	HeaderSourcePartition = "source.partition"
	HeaderSourceOffset    = "source.offset"
	// Only on a dead letter that could not keep the whole original value.
	HeaderTruncated      = "original.truncated"
	HeaderOriginalSize   = "original.size"
	HeaderOriginalSHA256 = "original.sha256"
)

// MaxBytes is the largest dead letter by default: a record batch of one
// record must stay under franz-go's batch limit (1,000,012 bytes by default),
// which is under Kafka's default max.message.bytes (1,048,588).
const MaxBytes = 1_000_000

// maxMessage bounds the error message kept in a dead letter.
const maxMessage = 4 << 10

// Letters builds the dead letters of one stage.
type Letters struct {
	Codec    *schemas.Codec[schemas.DeadLetter] // the dead letter queue
	Service  string                             // who failed: order, email
	MaxBytes int                                // default MaxBytes
	Logger   *slog.Logger
}

// Middleware routes poison to the dead letter queue: a handler error that
// is Poison, or a record whose outputs Kafka refused for good (txn.Refused),
// becomes the record's dead letter. Any other error passes on, and the
// transaction retries.
func (l Letters) Middleware(next txn.Handler) txn.Handler {
	return func(ctx context.Context, in *kgo.Record) ([]*kgo.Record, error) {
		class, err := string(schemas.ProduceRefused), txn.Refused(ctx)
		if err == nil {
			var out []*kgo.Record
			if out, err = next(ctx, in); err == nil {
				return out, nil
			}
			p, ok := errors.AsType[Poison](err)
			if !ok {
				return nil, err
			}
			class = p.ErrorClass()
		}
		// The key is the only business ID a record that cannot be read has.
		l.Logger.Warn("poison record to the dead letter queue",
			"topic", in.Topic, "partition", in.Partition, "offset", in.Offset, "key", string(in.Key),
			"error_class", class, "err", err)
		dl, err := l.Record(in, class, err)
		if err != nil {
			return nil, fmt.Errorf("build the dead letter of %s/%d@%d: %w", in.Topic, in.Partition, in.Offset, err)
		}
		return []*kgo.Record{dl}, nil
	}
}

// Record is the dead letter of src, which failed with class and reason.
func (l Letters) Record(src *kgo.Record, class string, reason error) (*kgo.Record, error) {
	limit := l.MaxBytes
	if limit <= 0 {
		limit = MaxBytes
	}
	msg := reason.Error()
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + "…"
	}
	dl := schemas.DeadLetter{
		OriginalValue:   src.Value,
		OriginalKey:     src.Key,
		SourceTopic:     src.Topic,
		SourcePartition: src.Partition,
		SourceOffset:    src.Offset,
		ErrorClass:      class,
		Error:           msg,
		Service:         l.Service,
		FailedAt:        time.Now().UTC().Truncate(time.Millisecond),
	}
	rec, err := l.build(&dl, src)
	if err != nil || size(rec) <= limit {
		return rec, err
	}

	// Too large: keep what fits of the value, then of the key, and say
	// what the whole value was.
	n, sum := int64(len(src.Value)), sha256.Sum256(src.Value)
	digest := hex.EncodeToString(sum[:])
	dl.Truncated, dl.OriginalSize, dl.OriginalSHA256 = true, &n, &digest
	for _, field := range []*[]byte{&dl.OriginalValue, &dl.OriginalKey} {
		if rec, err = l.build(&dl, src); err != nil {
			return nil, err
		}
		// Some slack: shorter fields also shorten their length prefixes.
		over := size(rec) - limit + 16
		if over <= 16 {
			return rec, nil
		}
		*field = (*field)[:max(0, len(*field)-over)]
	}
	if rec, err = l.build(&dl, src); err == nil && size(rec) > limit {
		err = fmt.Errorf("dead letter of %d bytes exceeds %d even without the original", size(rec), limit)
	}
	return rec, err
}

func (l Letters) build(dl *schemas.DeadLetter, src *kgo.Record) (*kgo.Record, error) {
	rec, err := l.Codec.Record(dl)
	if err != nil {
		return nil, err
	}
	rec.Headers = []kgo.RecordHeader{
		{Key: HeaderErrorClass, Value: []byte(dl.ErrorClass)},
		{Key: HeaderErrorMessage, Value: []byte(dl.Error)},
		{Key: HeaderSourceTopic, Value: []byte(src.Topic)},
		{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(src.Partition), 10)},
		{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, src.Offset, 10)},
	}
	if dl.Truncated {
		rec.Headers = append(rec.Headers,
			kgo.RecordHeader{Key: HeaderTruncated, Value: []byte("true")},
			kgo.RecordHeader{Key: HeaderOriginalSize, Value: strconv.AppendInt(nil, *dl.OriginalSize, 10)},
			kgo.RecordHeader{Key: HeaderOriginalSHA256, Value: []byte(*dl.OriginalSHA256)})
	}
	return rec, nil
}

// size bounds what rec takes in a record batch of its own: the batch header
// (61 bytes), the record's fields with their varint lengths at their
// widest, the headers.
func size(rec *kgo.Record) int {
	n := 61 + 5 + 1 + 10 + 5 + 5 + len(rec.Key) + 5 + len(rec.Value) + 5
	for _, h := range rec.Headers {
		n += 5 + len(h.Key) + 5 + len(h.Value)
	}
	return n
}

// Header returns the value of header key of r, or "".
func Header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
