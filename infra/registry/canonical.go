package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// canonicalAvro is the text two Avro schemas share when they are the same
// schema, and only then: Avro's Parsing Canonical Form, with what that form
// strips kept. It applies the form's transformations that change nothing a
// reader sees: a primitive written as {"type":"int"} becomes "int"; named
// types get their full names and lose "namespace"; "name", "type",
// "fields", "symbols", "items", "values" and "size" come first in that
// order; whitespace and escapes go. Unlike that form, it keeps every other
// attribute (default, logicalType, doc, aliases, order, custom
// properties), and numbers exactly as written, never through a float: a
// long default of 9007199254740993 stays ...993, and a new default is a
// new schema with a new ID, as Confluent's registry has it.
func canonicalAvro(text string) (string, error) {
	v, err := decodeExact(text)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := writeAvro(&b, v, ""); err != nil {
		return "", err
	}
	return b.String(), nil
}

// canonicalJSON is JSON text with its keys sorted and no whitespace,
// numbers as written: the identity of a schema that is JSON but not Avro
// (a JSON Schema some other registry wrote to the topic).
func canonicalJSON(text string) (string, error) {
	v, err := decodeExact(text)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	writeJSON(&b, v)
	return b.String(), nil
}

// decodeExact decodes one JSON value with its numbers as json.Number, the
// text they were written as.
func decodeExact(text string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("text after the schema")
	}
	return v, nil
}

// primitives are Avro's primitive type names.
var primitives = map[string]bool{"null": true, "boolean": true, "int": true, "long": true,
	"float": true, "double": true, "bytes": true, "string": true}

// firstKeys are the attributes Parsing Canonical Form orders first, in its
// order; the others follow sorted by name.
var firstKeys = []string{"name", "type", "fields", "symbols", "items", "values", "size"}

// fullName is a named type's or a reference's full name in namespace ns.
func fullName(name, ns string) string {
	if strings.Contains(name, ".") || ns == "" {
		return name
	}
	return ns + "." + name
}

// writeAvro writes the canonical form of a schema (a type) found in
// namespace ns.
func writeAvro(b *bytes.Buffer, v any, ns string) error {
	switch t := v.(type) {
	case string:
		if !primitives[t] {
			t = fullName(t, ns)
		}
		writeString(b, t)
	case []any: // a union
		b.WriteByte('[')
		for i, branch := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeAvro(b, branch, ns); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		return writeAvroObject(b, t, ns)
	default:
		return fmt.Errorf("a type must be a name, a union or an object, not %s", marshal(v))
	}
	return nil
}

func writeAvroObject(b *bytes.Buffer, obj map[string]any, ns string) error {
	typ, _ := obj["type"].(string)
	if primitives[typ] && len(obj) == 1 {
		writeString(b, typ)
		return nil
	}
	out := map[string]func() error{} // attribute → how to write its value
	for k, v := range obj {
		out[k] = func() error { writeJSON(b, v); return nil }
	}
	inner := ns
	switch typ {
	case "record", "error", "enum", "fixed":
		name, _ := obj["name"].(string)
		if space, ok := obj["namespace"].(string); ok && !strings.Contains(name, ".") {
			ns = space
		}
		full := fullName(name, ns)
		if i := strings.LastIndexByte(full, '.'); i >= 0 {
			inner = full[:i]
		} else {
			inner = ""
		}
		delete(out, "namespace")
		out["name"] = func() error { writeString(b, full); return nil }
	default:
		if t, ok := obj["type"]; ok && !primitives[typ] && typ != "array" && typ != "map" {
			// {"type": <a type>} is that type, written the long way.
			out["type"] = func() error { return writeAvro(b, t, ns) }
		}
	}
	if fields, ok := obj["fields"].([]any); ok {
		out["fields"] = func() error { return writeFields(b, fields, inner) }
	}
	for _, k := range []string{"items", "values"} {
		if t, ok := obj[k]; ok {
			out[k] = func() error { return writeAvro(b, t, inner) }
		}
	}
	keys := make([]string, 0, len(out))
	for k := range out {
		if !slices.Contains(firstKeys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	b.WriteByte('{')
	n := 0
	for _, k := range append(slices.Clone(firstKeys), keys...) {
		write, ok := out[k]
		if !ok {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		writeString(b, k)
		b.WriteByte(':')
		if err := write(); err != nil {
			return err
		}
	}
	b.WriteByte('}')
	return nil
}

// writeFields writes a record's fields, each with its type canonical and
// its other attributes (the default among them) as written.
func writeFields(b *bytes.Buffer, fields []any, ns string) error {
	b.WriteByte('[')
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		field, ok := f.(map[string]any)
		if !ok {
			return fmt.Errorf("a field must be an object, not %s", marshal(f))
		}
		keys := make([]string, 0, len(field))
		for k := range field {
			if k != "name" && k != "type" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		b.WriteString(`{"name":`)
		writeJSON(b, field["name"])
		b.WriteString(`,"type":`)
		if err := writeAvro(b, field["type"], ns); err != nil {
			return err
		}
		for _, k := range keys {
			b.WriteByte(',')
			writeString(b, k)
			b.WriteByte(':')
			writeJSON(b, field[k])
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return nil
}

// writeJSON writes a JSON value with sorted keys, no whitespace, and its
// numbers as written (json.Number): what marshal writes.
func writeJSON(b *bytes.Buffer, v any) { b.Write(marshal(v)) }

// writeString writes a JSON string with only the escapes JSON needs.
func writeString(b *bytes.Buffer, s string) { b.Write(marshal(s)) }
