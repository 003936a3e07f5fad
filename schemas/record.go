package schemas

import (
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// UserKey is the record key of every event about a user: the user ID as a
// decimal string, so one user's payment, order and email share a partition.
func UserKey(userID int64) []byte { return strconv.AppendInt(nil, userID, 10) }

// Record encodes v into a record for the codec's topic.
func (c *Codec[T]) Record(key []byte, v *T) (*kgo.Record, error) {
	value, err := c.Encode(v)
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: c.topic, Key: key, Value: value}, nil
}

// DLQ headers: the reason travels with the record, readable without Avro.
const (
	HeaderErrorClass      = "error.class"
	HeaderErrorMessage    = "error.message"
	HeaderSourceTopic     = "source.topic"
	HeaderSourcePartition = "source.partition"
	HeaderSourceOffset    = "source.offset"
)

// DeadLetterRecord wraps a record that service could not process into a
// record for the dead letter queue dlq. The original key and value are kept
// untouched; the reason is both in the DeadLetter value and in headers.
func DeadLetterRecord(dlq *Codec[DeadLetter], service string, src *kgo.Record, class string, reason error) (*kgo.Record, error) {
	dl := DeadLetter{
		OriginalValue:   src.Value,
		OriginalKey:     src.Key,
		SourceTopic:     src.Topic,
		SourcePartition: src.Partition,
		SourceOffset:    src.Offset,
		ErrorClass:      class,
		Error:           reason.Error(),
		Service:         service,
		FailedAt:        time.Now().UTC().Truncate(time.Millisecond),
	}
	rec, err := dlq.Record(src.Key, &dl)
	if err != nil {
		return nil, err
	}
	rec.Headers = []kgo.RecordHeader{
		{Key: HeaderErrorClass, Value: []byte(class)},
		{Key: HeaderErrorMessage, Value: []byte(dl.Error)},
		{Key: HeaderSourceTopic, Value: []byte(src.Topic)},
		{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(src.Partition), 10)},
		{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, src.Offset, 10)},
	}
	return rec, nil
}
