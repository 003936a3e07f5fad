package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/schemas"
)

// ProduceOptions say where lines go and how they become records.
type ProduceOptions struct {
	Brokers []string
	Connect []kgo.Opt // credentials, in secure mode
	Topic   string

	// Schema is the writer schema: "latest" (the subject's latest version,
	// the default), "build" (the .avsc this build embeds, registered if
	// needed), a version number of the subject, or the path of an .avsc
	// file, which is registered under the subject first (and refused with
	// 409 if it breaks the subject's compatibility).
	Schema string

	// Raw sends each line's bytes as they are, undecoded and unencoded:
	// hand-made poison. An empty line becomes a record without a value.
	Raw bool
	// Bytes is how bytes are spelled in the input: Text (default: as
	// typed), Base64 or Hex. It applies to raw lines and to Avro bytes
	// fields.
	Bytes Bytes

	// Key, if set, keys every record; otherwise a line's top-level
	// user_id keys it, as the services key every event, and a line
	// without one has no key.
	Key string
}

// Produced is what Produce wrote.
type Produced struct {
	Records  int
	SchemaID int // 0 for raw records
	Version  int // the subject version of SchemaID
}

// Sent is one record as Produce reports it.
type Sent struct {
	Line      int     `json:"line"`
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Offset    int64   `json:"offset"`
	Key       *string `json:"key"`
}

// Produce reads JSON lines from in, one value per line, encodes each with
// the schema opts.Schema names and writes it to opts.Topic with an
// idempotent producer and acks from all in-sync replicas. It prints one
// Sent line per record on out, in input order, once all are acknowledged.
// A line that does not fit the schema stops Produce before anything is sent.
func Produce(ctx context.Context, reg *sr.Client, opts ProduceOptions, in io.Reader, out io.Writer) (Produced, error) {
	if opts.Topic == "" {
		return Produced{}, errors.New("no topic to produce to")
	}
	if opts.Bytes == "" {
		opts.Bytes = Text
	}
	var (
		res    Produced
		schema avro.Schema
		err    error
	)
	if !opts.Raw {
		if schema, res.SchemaID, res.Version, err = writerSchema(ctx, reg, opts.Topic, opts.Schema); err != nil {
			return res, err
		}
	}

	// Encode everything first: a typo on line 900 should not leave 899
	// records behind.
	var recs []*kgo.Record
	var lines []int
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for n := 1; sc.Scan(); n++ {
		text := sc.Bytes()
		if !opts.Raw && len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		r, err := record(text, schema, res.SchemaID, opts)
		if err != nil {
			return res, fmt.Errorf("line %d: %w", n, err)
		}
		recs = append(recs, r)
		lines = append(lines, n)
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("read input: %w", err)
	}
	if len(recs) == 0 {
		return res, nil
	}

	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(opts.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks())}, opts.Connect...)...)
	if err != nil {
		return res, err
	}
	defer cl.Close()
	var (
		mu   sync.Mutex
		errs []error
	)
	for i, r := range recs {
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("line %d: %w", lines[i], err))
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return res, err
	}
	if len(errs) > 0 {
		return res, errors.Join(errs...)
	}
	enc := json.NewEncoder(out)
	for i, r := range recs {
		var key *string
		if r.Key != nil {
			k := string(r.Key)
			key = &k
		}
		if err := enc.Encode(Sent{Line: lines[i], Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: key}); err != nil {
			return res, err
		}
		res.Records++
	}
	return res, nil
}

// record turns one input line into a record.
func record(line []byte, schema avro.Schema, id int, opts ProduceOptions) (*kgo.Record, error) {
	r := &kgo.Record{Topic: opts.Topic}
	if opts.Key != "" {
		r.Key = []byte(opts.Key)
	} else {
		r.Key = userKey(line)
	}
	if opts.Raw {
		if len(line) == 0 {
			return r, nil // no value: the empty-value pill
		}
		v, err := opts.Bytes.Decode(string(line))
		if err != nil {
			return nil, fmt.Errorf("not %s: %w", opts.Bytes, err)
		}
		r.Value = v
		return r, nil
	}
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var j any
	if err := d.Decode(&j); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if d.More() {
		return nil, errors.New("more than one JSON value on the line")
	}
	native, err := fromJSON(schema, j, opts.Bytes, "")
	if err != nil {
		return nil, err
	}
	body, err := avroConfig.Marshal(schema, native)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	r.Value = append(binary.BigEndian.AppendUint32([]byte{0}, uint32(id)), body...)
	return r, nil
}

// avroConfig bounds what a value typed by hand can make the encoder allocate.
var avroConfig = avro.Config{MaxByteSliceSize: 1 << 20, MaxSliceAllocSize: 10_000}.Freeze()

// userKey is the decimal user_id of a JSON line, if it has one: the key
// every service uses, so the record lands on the user's partition.
func userKey(line []byte) []byte {
	var v struct {
		UserID json.Number `json:"user_id"`
	}
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	if err := d.Decode(&v); err != nil || v.UserID == "" {
		return nil
	}
	id, err := strconv.ParseInt(string(v.UserID), 10, 64)
	if err != nil {
		return nil
	}
	return schemas.UserKey(id)
}

// writerSchema finds the schema to write topic's values with, its ID and its
// version under the topic's subject.
func writerSchema(ctx context.Context, reg *sr.Client, topic, which string) (avro.Schema, int, int, error) {
	subject := schemas.Subject(topic)
	var (
		ss  sr.SubjectSchema
		err error
	)
	switch {
	case which == "" || which == "latest":
		ss, err = reg.SchemaByVersion(ctx, subject, -1)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("latest schema of %s: %w (run make schemas first?)", subject, err)
		}
	case which == "build":
		spec, ok := schemas.Lookup(topic)
		if !ok {
			return nil, 0, 0, fmt.Errorf("this build has no schema for topic %q", topic)
		}
		ss, err = schemas.Register(ctx, reg, spec)
	default:
		if v, convErr := strconv.Atoi(which); convErr == nil {
			ss, err = reg.SchemaByVersion(ctx, subject, v)
			break
		}
		text, readErr := os.ReadFile(which)
		if readErr != nil {
			return nil, 0, 0, fmt.Errorf("schema %q is not latest, build, a version number or a readable .avsc file: %w", which, readErr)
		}
		ss, err = schemas.RegisterText(ctx, reg, subject, string(text))
	}
	if err != nil {
		return nil, 0, 0, fmt.Errorf("schema %s of %s: %w", which, subject, err)
	}
	if ss.Type != sr.TypeAvro {
		return nil, 0, 0, fmt.Errorf("%s version %d is %s, not Avro", subject, ss.Version, ss.Type)
	}
	s, err := avro.ParseWithCache(ss.Schema.Schema, "", &avro.SchemaCache{})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%s version %d: %w", subject, ss.Version, err)
	}
	return s, ss.ID, ss.Version, nil
}

// Describe says which schema a Produced used, for the last line of the tool.
func (p Produced) Describe(topic string) string {
	if p.SchemaID == 0 {
		return fmt.Sprintf("produce: %d raw records to %s", p.Records, topic)
	}
	return fmt.Sprintf("produce: %d records to %s, schema ID %d (%s version %d)",
		p.Records, topic, p.SchemaID, schemas.Subject(topic), p.Version)
}
