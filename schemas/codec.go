package schemas

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

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
	readers    = sync.Pool{New: func() any { return avro.NewReader(nil, 0, avro.WithReaderConfig(avroConfig)) }}
	writerBufs = sync.Pool{New: func() any { return avro.NewWriter(nil, 512, avro.WithWriterConfig(avroConfig)) }}
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
// format: magic byte 0, the schema ID in four big-endian bytes, the Avro
// body. It writes with the schema of this build and reads any schema
// registered under the topic's subject, resolving it to this build's type.
type Codec[V any] struct {
	spec *Spec
	cat  *Catalog
	id   atomic.Int32 // the ID this build writes with; 0 until resolved

	dec sr.Serde // a decoder per writer ID met so far

	mu      sync.Mutex
	foreign map[int]*RecordError // IDs known to belong elsewhere
}

func newCodec[V any](c *Catalog, s *Spec) *Codec[V] {
	return &Codec[V]{spec: s, cat: c, foreign: make(map[int]*RecordError)}
}

// resolver is what Catalog.Resolve needs of a codec, whatever its type.
type resolver interface {
	resolved() bool
	setID(int)
}

func (c *Codec[V]) resolved() bool { return c.id.Load() != 0 }

func (c *Codec[V]) setID(id int) {
	c.dec.Register(id, new(V), sr.DecodeFn(decodeWith(c.spec.schema)))
	c.id.Store(int32(id))
}

// Topic is the row of the table this codec serves.
func (c *Codec[V]) Topic() *Spec { return c.spec }

// SchemaID is the registry ID this build writes with, 0 before the catalog
// resolved it.
func (c *Codec[V]) SchemaID() int { return int(c.id.Load()) }

// Encode returns v in the Confluent wire format.
func (c *Codec[V]) Encode(v *V) ([]byte, error) {
	id := c.id.Load()
	if id == 0 {
		return nil, &MissingSchemaError{Subject: c.spec.Subject, SchemaFile: c.spec.SchemaFile}
	}
	w := writerBufs.Get().(*avro.Writer)
	defer func() {
		if cap(w.Buffer()) <= maxPooledWriter {
			w.Error = nil
			writerBufs.Put(w)
		}
	}()
	w.Reset(nil)
	w.WriteVal(c.spec.schema, v)
	if w.Error != nil {
		return nil, w.Error
	}
	body := w.Buffer()
	out := make([]byte, 5+len(body))
	binary.BigEndian.PutUint32(out[1:5], uint32(id))
	copy(out[5:], body)
	return out, nil
}

// Record encodes v into a record of the codec's topic, keyed by the
// topic's rule.
func (c *Codec[V]) Record(v *V) (*kgo.Record, error) {
	value, err := c.Encode(v)
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: c.spec.Name, Key: c.spec.key(v), Value: value}, nil
}

// Decode reads a value of the topic. A value that can never be read returns
// a *RecordError naming its ErrorClass; any other error (the registry is
// unreachable, say) is worth retrying.
func (c *Codec[V]) Decode(ctx context.Context, b []byte) (*V, error) {
	id, err := header(b)
	if err != nil {
		return nil, err
	}
	v := new(V)
	err = c.dec.Decode(b, v)
	if errors.Is(err, sr.ErrNotRegistered) {
		if err := c.learn(ctx, id); err != nil {
			return nil, err
		}
		err = c.dec.Decode(b, v)
	}
	if err != nil {
		return nil, refuse(AvroDecode, "schema %d: %v", id, err)
	}
	return v, nil
}

// learn teaches the decoder to read writer schema id if it is a version of
// this topic's subject (schema resolution: fields added with defaults,
// fields removed), and otherwise says why not.
func (c *Codec[V]) learn(ctx context.Context, id int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dec.IsRegistered(id) {
		return nil // learnt by another goroutine meanwhile
	}
	if refused, ok := c.foreign[id]; ok {
		return refused
	}
	w, err := c.cat.writers.get(ctx, id)
	if err != nil {
		return err
	}
	if !slices.Contains(w.Subjects, c.spec.Subject) {
		c.foreign[id] = refuse(WrongSubject, "schema ID %d belongs to %v, not %s", id, w.Subjects, c.spec.Subject)
		return c.foreign[id]
	}
	resolved, err := avro.NewSchemaCompatibility().Resolve(c.spec.schema, w.Schema)
	if err != nil {
		c.foreign[id] = refuse(AvroDecode, "schema ID %d cannot be read as %s: %v", id, c.spec.Subject, err)
		return c.foreign[id]
	}
	c.dec.Register(id, new(V), sr.DecodeFn(decodeWith(resolved)))
	return nil
}

// DecodeWritten reads a value of any topic as its writer wrote it, into
// Avro's generic form (maps, slices), with the same framing, lookups and
// error classes as Decode: what the console tools show, fields of a newer
// version included.
func (c *Catalog) DecodeWritten(ctx context.Context, b []byte) (*Writer, any, error) {
	id, err := header(b)
	if err != nil {
		return nil, nil, err
	}
	w, err := c.writers.get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	var v any
	if err := unmarshalExact(w.Schema, b[5:], &v); err != nil {
		return w, nil, refuse(AvroDecode, "schema %d: %v", id, err)
	}
	return w, v, nil
}

// header checks the Confluent framing of b and returns its schema ID.
func header(b []byte) (int, error) {
	switch {
	case len(b) == 0:
		return 0, refuse(EmptyValue, "record has no value")
	case len(b) < 5 || b[0] != 0:
		return 0, refuse(BadMagicByte, "value does not start with the Confluent header (magic byte 0 and a 4-byte schema ID)")
	}
	return int(binary.BigEndian.Uint32(b[1:5])), nil
}

func decodeWith(s avro.Schema) func([]byte, any) error {
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
