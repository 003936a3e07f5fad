package registry

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// against returns the versions a level compares a new schema with: every
// live version for the transitive levels, only the newest otherwise, none
// for NONE.
func against(level sr.CompatibilityLevel, versions []int) []int {
	switch {
	case len(versions) == 0 || level == sr.CompatNone:
		return nil
	case level == sr.CompatBackwardTransitive || level == sr.CompatForwardTransitive || level == sr.CompatFullTransitive:
		return versions
	default:
		return versions[len(versions)-1:]
	}
}

// directions says which reader/writer pairings a level requires: backward
// means the new schema reads old data, forward means old readers read new
// data.
func directions(level sr.CompatibilityLevel) (backward, forward bool) {
	switch level {
	case sr.CompatBackward, sr.CompatBackwardTransitive:
		return true, false
	case sr.CompatForward, sr.CompatForwardTransitive:
		return false, true
	case sr.CompatFull, sr.CompatFullTransitive:
		return true, true
	default:
		return false, false
	}
}

// problems checks an Avro candidate against the given live versions of the
// subject and returns one description per failure, empty when compatible.
// A version of another type fails under every level but NONE: a subject
// does not change its type.
func problems(st *state, subject string, candidate avro.Schema, level sr.CompatibilityLevel, versions []int) []string {
	backward, forward := directions(level)
	if !backward && !forward {
		return nil
	}
	// A fresh checker per request: hamba caches verdicts by fingerprint, and
	// nothing here needs to outlive one check.
	checker := avro.NewSchemaCompatibility()
	var out []string
	report := func(version int, what string) {
		out = append(out, fmt.Sprintf("{oldSchemaVersion: %d, compatibility: '%s', description: '%s'}", version, level, what))
	}
	for _, v := range versions {
		old := st.version(subject, v, false)
		if old == nil {
			continue
		}
		if old.schema.Type != sr.TypeAvro {
			report(v, fmt.Sprintf("version %d is a %s schema, not AVRO: a subject keeps its type unless its level is NONE", v, old.schema.Type))
			continue
		}
		previous := st.compiled[old.id]
		if previous == nil || previous.avro == nil {
			report(v, fmt.Sprintf("version %d cannot be parsed as Avro: %v", v, previous.failure()))
			continue
		}
		if backward {
			if err := checker.Compatible(candidate, previous.avro); err != nil {
				report(v, fmt.Sprintf("the new schema cannot read data written with version %d: %v", v, err))
			}
		}
		if forward {
			if err := checker.Compatible(previous.avro, candidate); err != nil {
				report(v, fmt.Sprintf("version %d cannot read data written with the new schema: %v", v, err))
			}
		}
	}
	return out
}

// compiled is what the registry derives from a schema once, when it first
// sees its ID (or, for a request, once per request): its identity and, for
// Avro, the parsed schema that compatibility checks use. Nothing is parsed
// again to answer a lookup or to check a later version.
type compiled struct {
	identity string
	avro     avro.Schema // nil unless an Avro schema that parses
	err      error       // why it does not parse
}

func (c *compiled) failure() error {
	if c == nil {
		return errors.New("not compiled")
	}
	return c.err
}

// compiles counts the calls of compile, for the tests that show a schema
// is compiled once.
var compiles atomic.Int64

// compile parses s, the schemas it references in deps (as dependencies
// returns them, or the error it returned), and computes its identity.
func compile(s sr.Schema, deps []sr.Schema, depErr error) *compiled {
	compiles.Add(1)
	c := &compiled{identity: identity(s)}
	switch {
	case s.Type != sr.TypeAvro:
		c.err = fmt.Errorf("%s schemas are not supported", s.Type)
	case depErr != nil:
		c.err = depErr
	default:
		c.avro, c.err = parseAvro(s, deps)
	}
	return c
}

// identity is what makes two schemas the same schema: the type, the
// canonical text (canonicalAvro; sorted JSON for JSON Schema; the text
// trimmed for what does not decode) and the references.
func identity(s sr.Schema) string {
	text := strings.TrimSpace(s.Schema)
	canon := canonicalAvro
	if s.Type == sr.TypeJSON {
		canon = canonicalJSON
	}
	if s.Type != sr.TypeProtobuf {
		if c, err := canon(s.Schema); err == nil {
			text = c
		}
	}
	refs := slices.Clone(s.References)
	slices.SortFunc(refs, func(a, b sr.SchemaReference) int { return strings.Compare(a.Name, b.Name) })
	var b strings.Builder
	fmt.Fprintf(&b, "%s\x00%s", s.Type, text)
	for _, r := range refs {
		fmt.Fprintf(&b, "\x00%s\x00%s\x00%d", r.Name, r.Subject, r.Version)
	}
	return b.String()
}

// parseAvro parses a schema after its dependencies into a cache of its own.
// The global cache would let two versions of the same named record
// overwrite each other, so old and new would be compared with the wrong
// definitions.
func parseAvro(s sr.Schema, deps []sr.Schema) (avro.Schema, error) {
	cache := &avro.SchemaCache{}
	for _, dep := range deps {
		if _, err := avro.ParseWithCache(dep.Schema, "", cache); err != nil {
			return nil, fmt.Errorf("a referenced schema: %w", err)
		}
	}
	return avro.ParseWithCache(s.Schema, "", cache)
}

// dependencies are the schemas refs name, and theirs, depth first, each
// once, so that parsing them in order defines every named type before its
// use. It fails when a reference names no live version.
func dependencies(st *state, refs []sr.SchemaReference) ([]sr.Schema, error) {
	var deps []sr.Schema
	seen := map[string]bool{}
	var walk func(refs []sr.SchemaReference) error
	walk = func(refs []sr.SchemaReference) error {
		for _, ref := range refs {
			key := ref.Subject + "\x00" + strconv.Itoa(ref.Version)
			if seen[key] {
				continue
			}
			seen[key] = true
			dep := st.version(ref.Subject, ref.Version, false)
			if ref.Name == "" || dep == nil {
				return errf(422, sr.ErrInvalidSchema.Code, "Invalid schema: reference %q: subject %q version %d not found",
					ref.Name, ref.Subject, ref.Version)
			}
			if err := walk(dep.schema.References); err != nil {
				return err
			}
			deps = append(deps, dep.schema)
		}
		return nil
	}
	return deps, walk(refs)
}
