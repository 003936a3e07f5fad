package schemas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// Decode reads a value in the Confluent wire format. A value that can never
// be read returns a *RecordError naming its ErrorClass; any other error (the
// registry is unreachable, say) is worth retrying.
func (c *Codec[T]) Decode(ctx context.Context, b []byte) (*T, error) {
	switch {
	case len(b) == 0:
		return nil, refuse(EmptyValue, "record has no value")
	case len(b) < 5 || b[0] != 0:
		return nil, refuse(BadMagicByte, "value does not start with the Confluent header (magic byte 0 and a 4-byte schema ID)")
	}
	v := new(T)
	err := c.dec.Decode(b, v)
	if errors.Is(err, sr.ErrNotRegistered) {
		if err := c.learn(ctx, int(binary.BigEndian.Uint32(b[1:5]))); err != nil {
			return nil, err
		}
		err = c.dec.Decode(b, v)
	}
	if err != nil {
		return nil, refuse(AvroDecode, "schema %d: %v", binary.BigEndian.Uint32(b[1:5]), err)
	}
	return v, nil
}

// learn finds out what schema id is. If it is a version of this topic's
// subject, learn teaches the decoder to read it (schema resolution: fields
// added with defaults, fields removed); otherwise it says why not.
func (c *Codec[T]) learn(ctx context.Context, id int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dec.IsRegistered(id) {
		return nil // learnt by another goroutine meanwhile
	}
	if refused, ok := c.foreign[id]; ok {
		return refused
	}
	usages, err := c.registry.SchemaUsagesByID(ctx, id)
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			// Not cached: the ID may be registered a moment from now.
			return refuse(UnknownSchemaID, "schema ID %d is not in the registry", id)
		}
		return fmt.Errorf("look up schema ID %d: %w", id, err)
	}
	if !slices.ContainsFunc(usages, func(s sr.SubjectSchema) bool { return s.Subject == c.subject }) {
		subjects := make([]string, 0, len(usages))
		for _, u := range usages {
			subjects = append(subjects, u.Subject)
		}
		c.foreign[id] = refuse(WrongSubject, "schema ID %d belongs to %v, not %s", id, subjects, c.subject)
		return c.foreign[id]
	}
	writer, err := parse(usages[0].Schema.Schema)
	if err != nil {
		c.foreign[id] = refuse(AvroDecode, "schema ID %d does not parse: %v", id, err)
		return c.foreign[id]
	}
	resolved, err := avro.NewSchemaCompatibility().Resolve(c.schema, writer)
	if err != nil {
		c.foreign[id] = refuse(AvroDecode, "schema ID %d cannot be read as %s: %v", id, c.subject, err)
		return c.foreign[id]
	}
	c.dec.Register(id, new(T), sr.DecodeFn(c.decodeWith(resolved)))
	return nil
}
