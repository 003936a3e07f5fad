package console

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hamba/avro/v2"
)

// Bytes is how bytes are spelled in JSON: base64, hex, or text (the bytes
// as they are, for input only: a hand-made poison pill is typed, not encoded).
type Bytes string

const (
	Base64 Bytes = "base64"
	Hex    Bytes = "hex"
	Text   Bytes = "text"
)

// ParseBytes checks a --bytes flag.
func ParseBytes(s string, allowed ...Bytes) (Bytes, error) {
	if slices.Contains(allowed, Bytes(s)) {
		return Bytes(s), nil
	}
	return "", fmt.Errorf("bytes encoding %q: want one of %v", s, allowed)
}

// Encode spells b.
func (e Bytes) Encode(b []byte) string {
	switch e {
	case Hex:
		return hex.EncodeToString(b)
	case Text:
		return string(b)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// Decode reads bytes spelled as e.
func (e Bytes) Decode(s string) ([]byte, error) {
	switch e {
	case Hex:
		return hex.DecodeString(s)
	case Base64:
		return base64.StdEncoding.DecodeString(s)
	}
	return []byte(s), nil
}

// object is a JSON object that keeps its keys in schema order, so a record
// prints with its fields as the .avsc lists them.
type object []member

type member struct {
	name  string
	value any
}

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.name)
		v, err := json.Marshal(m.value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// timeLayout prints timestamp-millis exactly: always three decimals, UTC.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// toJSON turns a value decoded by hamba/avro with schema s into what
// encoding/json prints as a person reads Avro: records in field order,
// timestamps in RFC 3339, bytes spelled as enc, unions unwrapped.
func toJSON(s avro.Schema, v any, enc Bytes) any {
	if v == nil {
		return nil
	}
	switch s := s.(type) {
	case *avro.RefSchema:
		return toJSON(s.Schema(), v, enc)
	case *avro.RecordSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return plain(v, enc)
		}
		o := make(object, 0, len(s.Fields()))
		for _, f := range s.Fields() {
			o = append(o, member{f.Name(), toJSON(f.Type(), m[f.Name()], enc)})
		}
		return o
	case *avro.ArraySchema:
		items, ok := v.([]any)
		if !ok {
			return plain(v, enc)
		}
		out := make([]any, len(items))
		for i, it := range items {
			out[i] = toJSON(s.Items(), it, enc)
		}
		return out
	case *avro.MapSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return plain(v, enc)
		}
		out := make(map[string]any, len(m))
		for k, it := range m {
			out[k] = toJSON(s.Values(), it, enc)
		}
		return out
	case *avro.UnionSchema:
		// hamba unwraps a nullable union; other unions come as
		// {"branch name": value}.
		if s.Nullable() {
			for _, t := range s.Types() {
				if t.Type() != avro.Null {
					return toJSON(t, v, enc)
				}
			}
		}
		if m, ok := v.(map[string]any); ok && len(m) == 1 {
			for name, inner := range m {
				if t, _ := s.Types().Get(name); t != nil {
					return map[string]any{name: toJSON(t, inner, enc)}
				}
			}
		}
	}
	return plain(v, enc)
}

// plain converts the Go types hamba/avro decodes to that encoding/json does
// not print as Avro's JSON would.
func plain(v any, enc Bytes) any {
	switch v := v.(type) {
	case time.Time:
		return v.UTC().Format(timeLayout)
	case time.Duration:
		return v.String()
	case []byte:
		return enc.Encode(v)
	case *big.Rat:
		return v.FloatString(10)
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, it := range v {
			out[k] = plain(it, enc)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, it := range v {
			out[i] = plain(it, enc)
		}
		return out
	}
	return v
}

// fromJSON turns a JSON value (decoded with UseNumber) into the Go value
// hamba/avro encodes with schema s. It is strict, because a console producer
// that guesses writes records nobody meant: an unknown field is an error, so
// is a missing field, except that a field with a default takes it, a
// missing uuid gets a new one and a missing timestamp gets now.
func fromJSON(s avro.Schema, j any, enc Bytes, path string) (any, error) {
	switch s := s.(type) {
	case *avro.RefSchema:
		return fromJSON(s.Schema(), j, enc, path)
	case *avro.RecordSchema:
		m, ok := j.(map[string]any)
		if !ok {
			return nil, mismatch(path, "an object", j)
		}
		out := make(map[string]any, len(s.Fields()))
		known := make(map[string]bool, len(s.Fields()))
		for _, f := range s.Fields() {
			known[f.Name()] = true
			fpath := join(path, f.Name())
			jv, ok := m[f.Name()]
			if !ok {
				v, err := missing(f, fpath)
				if err != nil {
					return nil, err
				}
				if v != nil {
					out[f.Name()] = v
				}
				continue // hamba writes the default of a field left out
			}
			v, err := fromJSON(f.Type(), jv, enc, fpath)
			if err != nil {
				return nil, err
			}
			out[f.Name()] = v
		}
		for k := range m {
			if !known[k] {
				return nil, fmt.Errorf("%s: no such field in %s", join(path, k), s.FullName())
			}
		}
		return out, nil
	case *avro.ArraySchema:
		items, ok := j.([]any)
		if !ok {
			return nil, mismatch(path, "an array", j)
		}
		out := make([]any, len(items))
		for i, it := range items {
			v, err := fromJSON(s.Items(), it, enc, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case *avro.MapSchema:
		m, ok := j.(map[string]any)
		if !ok {
			return nil, mismatch(path, "an object", j)
		}
		out := make(map[string]any, len(m))
		for k, it := range m {
			v, err := fromJSON(s.Values(), it, enc, join(path, k))
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	case *avro.UnionSchema:
		return unionFromJSON(s, j, enc, path)
	case *avro.EnumSchema:
		str, ok := j.(string)
		if !ok || !slices.Contains(s.Symbols(), str) {
			return nil, fmt.Errorf("%s: want one of %v, got %v", path, s.Symbols(), j)
		}
		return str, nil
	case *avro.PrimitiveSchema:
		return primitiveFromJSON(s, j, enc, path)
	}
	return nil, fmt.Errorf("%s: the console does not write Avro %s values", path, s.Type())
}

// missing is the value of a field the input left out: nil when the schema's
// default applies.
func missing(f *avro.Field, path string) (any, error) {
	if f.HasDefault() {
		return nil, nil
	}
	if p, ok := f.Type().(*avro.PrimitiveSchema); ok && p.Logical() != nil {
		switch p.Logical().Type() {
		case avro.UUID:
			return uuid.NewString(), nil
		case avro.TimestampMillis:
			return time.Now().UTC().Truncate(time.Millisecond), nil
		case avro.TimestampMicros:
			return time.Now().UTC().Truncate(time.Microsecond), nil
		}
	}
	return nil, fmt.Errorf("%s: missing, and the schema gives it no default", path)
}

func unionFromJSON(s *avro.UnionSchema, j any, enc Bytes, path string) (any, error) {
	if j == nil {
		if s.Nullable() || slices.ContainsFunc(s.Types(), func(t avro.Schema) bool { return t.Type() == avro.Null }) {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: null is not one of %s", path, branchNames(s))
	}
	// Avro's own JSON spells a union as {"branch name": value}.
	if m, ok := j.(map[string]any); ok && len(m) == 1 {
		for name, inner := range m {
			if t, _ := s.Types().Get(name); t != nil {
				v, err := fromJSON(t, inner, enc, path)
				if err != nil {
					return nil, err
				}
				return map[string]any{name: v}, nil
			}
		}
	}
	// Otherwise the first branch that takes the value.
	var errs []error
	for _, t := range s.Types() {
		if t.Type() == avro.Null {
			continue
		}
		v, err := fromJSON(t, j, enc, path)
		if err == nil {
			return map[string]any{unionName(t): v}, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%s: fits no branch of %s: %w", path, branchNames(s), errors.Join(errs...))
}

// unionName is how hamba/avro names a branch in a union's map form.
func unionName(t avro.Schema) string {
	if r, ok := t.(*avro.RefSchema); ok {
		t = r.Schema()
	}
	if n, ok := t.(avro.NamedSchema); ok {
		return n.FullName()
	}
	if p, ok := t.(*avro.PrimitiveSchema); ok && p.Logical() != nil {
		return string(p.Type()) + "." + string(p.Logical().Type())
	}
	return string(t.Type())
}

func branchNames(s *avro.UnionSchema) string {
	names := make([]string, len(s.Types()))
	for i, t := range s.Types() {
		names[i] = unionName(t)
	}
	return "[" + strings.Join(names, ", ") + "]"
}

func primitiveFromJSON(s *avro.PrimitiveSchema, j any, enc Bytes, path string) (any, error) {
	logical := avro.LogicalType("")
	if s.Logical() != nil {
		logical = s.Logical().Type()
	}
	switch s.Type() {
	case avro.Null:
		if j != nil {
			return nil, mismatch(path, "null", j)
		}
		return nil, nil
	case avro.Boolean:
		b, ok := j.(bool)
		if !ok {
			return nil, mismatch(path, "true or false", j)
		}
		return b, nil
	case avro.String:
		str, ok := j.(string)
		if !ok {
			return nil, mismatch(path, "a string", j)
		}
		if logical == avro.UUID {
			if _, err := uuid.Parse(str); err != nil {
				return nil, fmt.Errorf("%s: %q is not a UUID", path, str)
			}
		}
		return str, nil
	case avro.Bytes:
		str, ok := j.(string)
		if !ok {
			return nil, mismatch(path, "a string of "+string(enc)+" bytes", j)
		}
		b, err := enc.Decode(str)
		if err != nil {
			return nil, fmt.Errorf("%s: not %s: %w", path, enc, err)
		}
		return b, nil
	case avro.Int:
		n, err := integer(j, path, math.MinInt32, math.MaxInt32)
		return int32(n), err
	case avro.Long:
		if logical == avro.TimestampMillis || logical == avro.TimestampMicros {
			return timestamp(j, path, logical)
		}
		return integer(j, path, math.MinInt64, math.MaxInt64)
	case avro.Float, avro.Double:
		num, ok := j.(json.Number)
		if !ok {
			return nil, mismatch(path, "a number", j)
		}
		f, err := num.Float64()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if s.Type() == avro.Float {
			return float32(f), nil
		}
		return f, nil
	}
	return nil, fmt.Errorf("%s: the console does not write Avro %s values", path, s.Type())
}

func integer(j any, path string, lo, hi int64) (int64, error) {
	num, ok := j.(json.Number)
	if !ok {
		return 0, mismatch(path, "an integer", j)
	}
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s: %s is not an integer between %d and %d", path, num, lo, hi)
	}
	return n, nil
}

// timestamp takes RFC 3339 text or a number of milliseconds (microseconds
// for timestamp-micros) since the epoch.
func timestamp(j any, path string, logical avro.LogicalType) (time.Time, error) {
	switch v := j.(type) {
	case string:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: %q is not an RFC 3339 time such as 2026-11-27T09:30:00.000Z", path, v)
		}
		return t.UTC(), nil
	case json.Number:
		n, err := integer(v, path, math.MinInt64, math.MaxInt64)
		if err != nil {
			return time.Time{}, err
		}
		if logical == avro.TimestampMicros {
			return time.UnixMicro(n).UTC(), nil
		}
		return time.UnixMilli(n).UTC(), nil
	}
	return time.Time{}, mismatch(path, "an RFC 3339 time or milliseconds since the epoch", j)
}

func mismatch(path, want string, got any) error {
	b, _ := json.Marshal(got)
	return fmt.Errorf("%s: want %s, got %s", path, want, b)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
