package registry

import (
	"encoding/json"
	"fmt"
	"strconv"

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
			report(v, fmt.Sprintf("version %d is a %s schema, not AVRO", v, old.schema.Type))
			continue
		}
		previous, err := parseAvro(st, old.schema)
		if err != nil {
			report(v, fmt.Sprintf("version %d cannot be parsed as Avro: %v", v, err))
			continue
		}
		if backward {
			if err := checker.Compatible(candidate, previous); err != nil {
				report(v, fmt.Sprintf("the new schema cannot read data written with version %d: %v", v, err))
			}
		}
		if forward {
			if err := checker.Compatible(previous, candidate); err != nil {
				report(v, fmt.Sprintf("version %d cannot read data written with the new schema: %v", v, err))
			}
		}
	}
	return out
}

// parseAvro parses a schema with its references into a cache of its own.
// The global cache would let two versions of the same named record
// overwrite each other, so old and new would be compared with the wrong
// definitions.
func parseAvro(st *state, s sr.Schema) (avro.Schema, error) {
	cache := &avro.SchemaCache{}
	if err := loadReferences(st, s.References, cache, map[string]bool{}); err != nil {
		return nil, err
	}
	return avro.ParseWithCache(s.Schema, "", cache)
}

// loadReferences parses referenced schemas (and theirs, depth first) into
// cache so the named types they define resolve. seen stops a schema that is
// reached twice from being parsed twice.
func loadReferences(st *state, refs []sr.SchemaReference, cache *avro.SchemaCache, seen map[string]bool) error {
	for _, ref := range refs {
		key := ref.Subject + "\x00" + strconv.Itoa(ref.Version)
		if seen[key] {
			continue
		}
		seen[key] = true
		dep := st.version(ref.Subject, ref.Version, false)
		if dep == nil {
			return fmt.Errorf("reference %q: subject %q version %d not found", ref.Name, ref.Subject, ref.Version)
		}
		if err := loadReferences(st, dep.schema.References, cache, seen); err != nil {
			return err
		}
		if _, err := avro.ParseWithCache(dep.schema.Schema, "", cache); err != nil {
			return fmt.Errorf("reference %q: %w", ref.Name, err)
		}
	}
	return nil
}

// validate checks that a schema can be stored: Avro must parse with its
// references, JSON Schema must be JSON, Protobuf must not be empty, and
// every reference must name a live version. Only Avro is checked for
// compatibility; the parsed Avro schema is returned for that.
func validate(st *state, s sr.Schema) (avro.Schema, error) {
	for _, ref := range s.References {
		if ref.Name == "" || st.version(ref.Subject, ref.Version, false) == nil {
			return nil, errf(422, sr.ErrInvalidSchema.Code, "Invalid schema: reference %q: subject %q version %d not found",
				ref.Name, ref.Subject, ref.Version)
		}
	}
	switch s.Type {
	case sr.TypeAvro:
		parsed, err := parseAvro(st, s)
		if err != nil {
			return nil, errf(422, sr.ErrInvalidSchema.Code, "Invalid Avro schema: %v", err)
		}
		return parsed, nil
	case sr.TypeJSON:
		if !json.Valid([]byte(s.Schema)) {
			return nil, errf(422, sr.ErrInvalidSchema.Code, "Invalid JSON schema: not JSON")
		}
	}
	return nil, nil
}
