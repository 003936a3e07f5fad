package console

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/schemas"
)

// avroConfig bounds what a hostile record can make the console allocate.
var avroConfig = avro.Config{MaxByteSliceSize: 1 << 20, MaxSliceAllocSize: 10_000}.Freeze()

// writer is a schema met in a record's header, as the registry holds it.
type writer struct {
	id       int
	schema   avro.Schema
	subjects []string // the subjects that hold this schema
}

// decoder reads values in the Confluent wire format with the schema that
// wrote them. Unlike the services' codecs it does not resolve them to a
// reader's schema: a console shows what was written, a v2 field included.
type decoder struct {
	reg *sr.Client

	mu      sync.Mutex
	writers map[int]*writer
	refused map[int]*schemas.RecordError // IDs that will never decode
}

func newDecoder(reg *sr.Client) *decoder {
	return &decoder{reg: reg, writers: make(map[int]*writer), refused: make(map[int]*schemas.RecordError)}
}

// decode returns the writer schema and the decoded value. A value that can
// never decode returns a *schemas.RecordError with the class the services
// would give it; any other error (the registry is down) is worth retrying.
func (d *decoder) decode(ctx context.Context, b []byte) (*writer, any, error) {
	switch {
	case len(b) == 0:
		return nil, nil, refuse(schemas.EmptyValue, "record has no value")
	case len(b) < 5 || b[0] != 0:
		return nil, nil, refuse(schemas.BadMagicByte, "value does not start with the Confluent header (magic byte 0 and a 4-byte schema ID)")
	}
	w, err := d.writer(ctx, int(binary.BigEndian.Uint32(b[1:5])))
	if err != nil {
		return nil, nil, err
	}
	v, err := decodeExact(w.schema, b[5:])
	if err != nil {
		return w, nil, refuse(schemas.AvroDecode, "schema %d: %v", w.id, err)
	}
	return w, v, nil
}

func (d *decoder) writer(ctx context.Context, id int) (*writer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if w, ok := d.writers[id]; ok {
		return w, nil
	}
	if re, ok := d.refused[id]; ok {
		return nil, re
	}
	usages, err := d.reg.SchemaUsagesByID(ctx, id)
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return nil, refuse(schemas.UnknownSchemaID, "schema ID %d is not in the registry", id)
		}
		return nil, fmt.Errorf("look up schema ID %d: %w", id, err)
	}
	if len(usages) == 0 {
		return nil, refuse(schemas.UnknownSchemaID, "schema ID %d is under no subject", id)
	}
	s, err := avro.ParseWithCache(usages[0].Schema.Schema, "", &avro.SchemaCache{})
	if err != nil {
		d.refused[id] = refuse(schemas.AvroDecode, "schema ID %d does not parse: %v", id, err)
		return nil, d.refused[id]
	}
	w := &writer{id: id, schema: s}
	for _, u := range usages {
		if !slices.Contains(w.subjects, u.Subject) {
			w.subjects = append(w.subjects, u.Subject)
		}
	}
	d.writers[id] = w
	return w, nil
}

// decodeExact decodes b, which must hold exactly one value: a body cut
// short or followed by stray bytes is not what its header claims.
func decodeExact(s avro.Schema, b []byte) (any, error) {
	r := avro.NewReader(nil, 0, avro.WithReaderConfig(avroConfig)).Reset(b)
	var v any
	r.ReadVal(s, &v)
	if r.Error != nil {
		if errors.Is(r.Error, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, r.Error
	}
	if r.Peek(); r.Error == nil {
		return nil, errors.New("trailing bytes after the value")
	}
	return v, nil
}

func refuse(class schemas.ErrorClass, format string, args ...any) *schemas.RecordError {
	return &schemas.RecordError{Class: class, Err: fmt.Errorf(format, args...)}
}
