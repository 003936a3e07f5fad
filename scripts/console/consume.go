// Package console is the shop's console consumer and producer: Kafka's
// kafka-console-consumer and kafka-console-producer, but speaking the shop's
// Avro in the Confluent wire format through the schema registry, with JSON
// lines on the terminal side. scripts/consume and scripts/produce are their
// command lines.
package console

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/schemas"
)

// ConsumeOptions say what to read and how to print it.
type ConsumeOptions struct {
	Brokers []string
	Connect []kgo.Opt // credentials, in secure mode
	Topics  []string

	// Group, if set, reads as a member of this consumer group and commits
	// what it printed; a group that has committed resumes from there.
	Group string
	// FromBeginning starts where the log starts; otherwise at its end, as
	// Kafka's console consumer does.
	FromBeginning bool
	// ReadUncommitted shows records of open and aborted transactions too.
	// The default, read_committed, is what every service of the shop reads.
	ReadUncommitted bool

	Raw   bool  // print values as bytes, without decoding
	Bytes Bytes // how bytes print: Base64 (default) or Hex

	Max  int           // stop after this many records; 0: no limit
	Idle time.Duration // stop when nothing arrives for this long; 0: never
}

// Line is one record as the console prints it, one JSON object per line.
type Line struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Timestamp string            `json:"timestamp"`
	Key       *string           `json:"key"`
	Headers   map[string]string `json:"headers,omitempty"`
	SchemaID  int               `json:"schema_id,omitempty"`
	Value     any               `json:"value"`

	// A dead letter's reason and the bytes of the record it keeps.
	ErrorClass    string  `json:"error_class,omitempty"`
	Error         string  `json:"error,omitempty"`
	OriginalKey   *string `json:"original_key,omitempty"`
	OriginalValue *string `json:"original_value,omitempty"`
	OriginalText  *string `json:"original_text,omitempty"` // the same, when it is printable text

	// Why a value did not decode; Value then holds its bytes.
	DecodeError *DecodeError `json:"decode_error,omitempty"`
}

// DecodeError says why a value could not be read, in the DLQ's classes.
type DecodeError struct {
	Class string `json:"class"`
	Error string `json:"error"`
}

// Consume prints the records of opts.Topics on out until ctx ends, Max
// records are printed, or nothing came for Idle. It returns how many it
// printed.
func Consume(ctx context.Context, reg *sr.Client, opts ConsumeOptions, out io.Writer) (int, error) {
	if len(opts.Topics) == 0 {
		return 0, errors.New("no topic to consume")
	}
	if opts.Bytes == "" {
		opts.Bytes = Base64
	}
	start := kgo.NewOffset().AtEnd()
	if opts.FromBeginning {
		start = kgo.NewOffset().AtStart()
	}
	isolation := kgo.ReadCommitted()
	if opts.ReadUncommitted {
		isolation = kgo.ReadUncommitted()
	}
	kopts := append([]kgo.Opt{
		kgo.SeedBrokers(opts.Brokers...),
		kgo.ConsumeTopics(opts.Topics...),
		kgo.ConsumeResetOffset(start),
		kgo.FetchIsolationLevel(isolation),
	}, opts.Connect...)
	assigned := make(chan struct{})
	if opts.Group != "" {
		// Commit only what was printed: records polled but not
		// printed (past Max) stay for the next reader.
		var once sync.Once
		kopts = append(kopts, kgo.ConsumerGroup(opts.Group), kgo.DisableAutoCommit(),
			kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
				once.Do(func() { close(assigned) })
			}))
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	if opts.Group != "" {
		// Joining a group takes a rebalance, seconds on a busy
		// cluster: the idle time starts once partitions are ours. A
		// member left without partitions goes on after a while.
		select {
		case <-assigned:
		case <-ctx.Done():
		case <-time.After(groupJoinWait):
		}
	}

	dec := schemas.NewCatalog(reg)
	w := bufio.NewWriter(out)
	defer w.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)

	printed := 0
	for opts.Max == 0 || printed < opts.Max {
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if opts.Idle > 0 {
			pollCtx, cancel = context.WithTimeout(ctx, opts.Idle)
		}
		limit := -1
		if opts.Max > 0 {
			limit = opts.Max - printed
		}
		fetches := cl.PollRecords(pollCtx, limit)
		idle := pollCtx.Err() != nil
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			break
		}
		var fetchErr error
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				fetchErr = fmt.Errorf("fetch %s partition %d: %w", topic, p, err)
			}
		})
		if fetchErr != nil {
			return printed, fetchErr
		}
		recs := fetches.Records()
		for _, r := range recs {
			line, err := describe(ctx, dec, r, opts)
			if err != nil {
				return printed, err
			}
			if err := enc.Encode(line); err != nil {
				return printed, err
			}
			printed++
		}
		if err := w.Flush(); err != nil {
			return printed, err
		}
		if opts.Group != "" && len(recs) > 0 {
			if err := commitPrinted(ctx, cl, recs); err != nil {
				return printed, fmt.Errorf("commit to group %s: %w", opts.Group, err)
			}
		}
		if idle && len(recs) == 0 {
			break
		}
	}
	return printed, nil
}

// commitPrinted commits the offsets after recs. It leaves out the leader
// epoch: the next reader then starts at the offset as committed, without
// first validating an epoch, which is all a console reader needs.
func commitPrinted(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	for _, r := range recs {
		if offsets[r.Topic] == nil {
			offsets[r.Topic] = make(map[int32]kgo.EpochOffset)
		}
		offsets[r.Topic][r.Partition] = kgo.EpochOffset{Epoch: -1, Offset: r.Offset + 1}
	}
	var commitErr error
	cl.CommitOffsetsSync(context.WithoutCancel(ctx), offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			commitErr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil && commitErr == nil {
					commitErr = err
				}
			}
		}
	})
	return commitErr
}

// groupJoinWait bounds the wait for a partition assignment in a group.
const groupJoinWait = 30 * time.Second

// describe turns a record into its printed line.
func describe(ctx context.Context, dec *schemas.Catalog, r *kgo.Record, opts ConsumeOptions) (*Line, error) {
	line := &Line{
		Topic:     r.Topic,
		Partition: r.Partition,
		Offset:    r.Offset,
		Timestamp: r.Timestamp.UTC().Format(timeLayout),
		Key:       text(r.Key, opts.Bytes),
	}
	if len(r.Headers) > 0 {
		line.Headers = make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			line.Headers[h.Key] = *text(h.Value, opts.Bytes)
		}
	}
	if opts.Raw {
		line.Value = bytesOrNil(r.Value, opts.Bytes)
		return line, nil
	}
	w, v, err := dec.DecodeWritten(ctx, r.Value)
	var re *schemas.RecordError
	switch {
	case errors.As(err, &re):
		line.Value = bytesOrNil(r.Value, opts.Bytes)
		line.DecodeError = &DecodeError{Class: string(re.Class), Error: re.Err.Error()}
		return line, nil
	case err != nil:
		return nil, err
	}
	line.SchemaID = w.ID
	line.Value = toJSON(w.Schema, v, opts.Bytes)
	if subject := schemas.Subject(r.Topic); !slices.Contains(w.Subjects, subject) {
		line.DecodeError = &DecodeError{Class: string(schemas.WrongSubject),
			Error: fmt.Sprintf("schema ID %d belongs to %v, not %s", w.ID, w.Subjects, subject)}
	}
	if m, ok := v.(map[string]any); ok {
		deadLetter(line, m, opts.Bytes)
	}
	return line, nil
}

// deadLetter lifts a dead letter's reason and original bytes to the top of
// its line, so `jq .error_class` works the same on every DLQ.
func deadLetter(line *Line, m map[string]any, enc Bytes) {
	class, ok := m["error_class"].(string)
	if !ok {
		return
	}
	if _, ok := m["original_value"]; !ok {
		return
	}
	line.ErrorClass = class
	line.Error, _ = m["error"].(string)
	if b, ok := m["original_key"].([]byte); ok {
		line.OriginalKey = text(b, enc)
	}
	if b, ok := m["original_value"].([]byte); ok {
		s := enc.Encode(b)
		line.OriginalValue = &s
		if printable(b) {
			t := string(b)
			line.OriginalText = &t
		}
	}
}

// text is b as a string when it is printable text, such as a user ID key;
// otherwise b spelled as enc.
func text(b []byte, enc Bytes) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	if !printable(b) {
		s = enc.Encode(b)
	}
	return &s
}

func bytesOrNil(b []byte, enc Bytes) any {
	if b == nil {
		return nil
	}
	return enc.Encode(b)
}

func printable(b []byte) bool {
	if len(b) == 0 || !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if !unicode.IsPrint(r) && !unicode.IsSpace(r) {
			return false
		}
	}
	return true
}
