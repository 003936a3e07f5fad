package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

// Key types of the _schemas records that this registry reads and writes.
// SCHEMA and CONFIG are Confluent's; Confluent writes others too (NOOP,
// MODE, DELETE_SUBJECT, …), which the fold skips. MAX_ID is this
// registry's own, and a Confluent registry would skip it: see maxIDKey.
const (
	keySchema = "SCHEMA"
	keyConfig = "CONFIG"
	keyMaxID  = "MAX_ID"
)

// maxIDKey is the key of the highest ID given so far, {"maxId":N}, written
// with every permanent delete. Compaction drops the records a tombstone
// supersedes, and with them the IDs they held: without this record, a
// restart after the highest ID was deleted for good would give that ID to
// the next new schema, and old records in the topics that carry it would
// decode with the wrong schema.
var maxIDKey = []byte(`{"keytype":"MAX_ID","magic":0}`)

type maxIDValue struct {
	MaxID int `json:"maxId"`
}

// schemaKey is the key of one version of a subject, byte for byte as
// Confluent writes it: {"keytype":"SCHEMA","subject":S,"version":V,"magic":1}.
type schemaKey struct {
	KeyType string `json:"keytype"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
	Magic   int    `json:"magic"`
}

// configKey is the key of a compatibility level; a nil subject is the global
// level: {"keytype":"CONFIG","subject":null,"magic":0}.
type configKey struct {
	KeyType string  `json:"keytype"`
	Subject *string `json:"subject"`
	Magic   int     `json:"magic"`
}

// anyKey decodes the key of any record on the topic.
type anyKey struct {
	KeyType string  `json:"keytype"`
	Subject *string `json:"subject"`
	Version int     `json:"version"`
}

// schemaValue is the value of a SCHEMA record, in Confluent's field order:
// the version as the API shows it, and whether it is deleted.
type schemaValue struct {
	subjectSchema
	Deleted bool `json:"deleted"`
}

// configValue is the value of a CONFIG record.
type configValue struct {
	CompatibilityLevel sr.CompatibilityLevel `json:"compatibilityLevel"`
}

// marshal encodes v as Confluent's Jackson does: without escaping <, >
// and &.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // of the types below, which always encode
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func encodeSchemaKey(subject string, version int) []byte {
	return marshal(schemaKey{KeyType: keySchema, Subject: subject, Version: version, Magic: 1})
}

// encodeConfigKey is the key of subject's level; "" is the global level.
func encodeConfigKey(subject string) []byte {
	k := configKey{KeyType: keyConfig}
	if subject != "" {
		k.Subject = &subject
	}
	return marshal(k)
}

func encodeSchemaValue(subject string, version int, v *stored) []byte {
	return marshal(schemaValue{showVersion(subject, version, v), v.deleted})
}

// maxIDRecord keeps the highest ID given so far past compaction.
func maxIDRecord(st *state) *kgo.Record {
	return record(maxIDKey, marshal(maxIDValue{st.maxID}))
}

func encodeConfigValue(level sr.CompatibilityLevel) []byte {
	return marshal(configValue{CompatibilityLevel: level})
}

// stored is one version of a subject.
type stored struct {
	id      int
	schema  sr.Schema
	deleted bool // soft-deleted
}

type subjectState struct {
	versions map[int]*stored
	level    *sr.CompatibilityLevel // its own level, if it has one
}

type svKey struct {
	subject string
	version int
}

// state is the fold of the topic: the latest value of every key. It is only
// changed by apply, from the follower, in offset order.
type state struct {
	subjects map[string]*subjectState
	global   *sr.CompatibilityLevel // nil: the default, BACKWARD
	maxID    int                    // the highest ID ever seen, deleted or not
	uses     map[int]map[svKey]bool // ID → the versions (soft-deleted too) that hold it
}

func newState() *state {
	return &state{subjects: map[string]*subjectState{}, uses: map[int]map[svKey]bool{}}
}

// apply folds one record into the state. A record it cannot read is an
// error and changes nothing.
func (s *state) apply(key, value []byte) error {
	var k anyKey
	if err := json.Unmarshal(key, &k); err != nil {
		return fmt.Errorf("key %q: %w", key, err)
	}
	switch k.KeyType {
	case keySchema:
		if k.Subject == nil || k.Version < 1 {
			return fmt.Errorf("key %q: no subject or version", key)
		}
		if value == nil {
			s.dropVersion(*k.Subject, k.Version)
			return nil
		}
		var v schemaValue
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("value of %s version %d: %w", *k.Subject, k.Version, err)
		}
		s.dropVersion(*k.Subject, k.Version)
		subj := s.subjects[*k.Subject]
		if subj == nil {
			subj = &subjectState{versions: map[int]*stored{}}
			s.subjects[*k.Subject] = subj
		}
		subj.versions[k.Version] = &stored{id: v.ID, deleted: v.Deleted,
			schema: sr.Schema{Schema: v.Schema, Type: v.SchemaType, References: v.References}}
		if s.uses[v.ID] == nil {
			s.uses[v.ID] = map[svKey]bool{}
		}
		s.uses[v.ID][svKey{*k.Subject, k.Version}] = true
		s.maxID = max(s.maxID, v.ID)
	case keyMaxID:
		var v maxIDValue
		if value != nil {
			if err := json.Unmarshal(value, &v); err != nil {
				return fmt.Errorf("max ID value %q: %w", value, err)
			}
		}
		s.maxID = max(s.maxID, v.MaxID)
	case keyConfig:
		var level *sr.CompatibilityLevel
		if value != nil {
			var v configValue
			if err := json.Unmarshal(value, &v); err != nil {
				return fmt.Errorf("config value %q: %w", value, err)
			}
			level = &v.CompatibilityLevel
		}
		if k.Subject == nil {
			s.global = level
			return nil
		}
		subj := s.subjects[*k.Subject]
		if subj == nil {
			if level == nil {
				return nil
			}
			subj = &subjectState{versions: map[int]*stored{}}
			s.subjects[*k.Subject] = subj
		}
		subj.level = level
		s.gc(*k.Subject)
	}
	return nil
}

// dropVersion forgets a version and its use of its ID.
func (s *state) dropVersion(subject string, version int) {
	subj := s.subjects[subject]
	if subj == nil {
		return
	}
	if old := subj.versions[version]; old != nil {
		delete(s.uses[old.id], svKey{subject, version})
		if len(s.uses[old.id]) == 0 {
			delete(s.uses, old.id)
		}
		delete(subj.versions, version)
	}
	s.gc(subject)
}

// gc forgets a subject that holds neither a version nor a level.
func (s *state) gc(subject string) {
	if subj := s.subjects[subject]; subj != nil && len(subj.versions) == 0 && subj.level == nil {
		delete(s.subjects, subject)
	}
}

// versions returns a subject's versions in ascending order: the live ones,
// with deleted also the soft-deleted ones.
func (s *state) versions(subject string, deleted bool) []int {
	subj := s.subjects[subject]
	if subj == nil {
		return nil
	}
	var out []int
	for v, st := range subj.versions {
		if deleted || !st.deleted {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// version returns one version of a subject, nil if there is none (or it is
// soft-deleted and deleted is false).
func (s *state) version(subject string, version int, deleted bool) *stored {
	subj := s.subjects[subject]
	if subj == nil {
		return nil
	}
	st := subj.versions[version]
	if st == nil || (st.deleted && !deleted) {
		return nil
	}
	return st
}

// level is the level that applies to subject: its own, else the global one.
func (s *state) level(subject string) sr.CompatibilityLevel {
	if subj := s.subjects[subject]; subj != nil && subj.level != nil {
		return *subj.level
	}
	return s.globalLevel()
}

func (s *state) globalLevel() sr.CompatibilityLevel {
	if s.global != nil {
		return *s.global
	}
	return sr.CompatBackward
}

// usesOf returns the versions that hold id, by subject then version; with
// deleted false only the live ones.
func (s *state) usesOf(id int, deleted bool) []svKey {
	var out []svKey
	for k := range s.uses[id] {
		if deleted || !s.subjects[k.subject].versions[k.version].deleted {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b svKey) int {
		if c := strings.Compare(a.subject, b.subject); c != 0 {
			return c
		}
		return a.version - b.version
	})
	return out
}

// schemaByID returns the schema of an ID that some version, live or
// soft-deleted, still holds.
func (s *state) schemaByID(id int) (sr.Schema, bool) {
	uses := s.usesOf(id, true)
	if len(uses) == 0 {
		return sr.Schema{}, false
	}
	return s.subjects[uses[0].subject].versions[uses[0].version].schema, true
}

// idOf returns the lowest ID of a schema identical to sch, if any version
// holds one: Confluent gives an identical schema the same ID in every subject.
func (s *state) idOf(sch sr.Schema) (int, bool) {
	want := identity(sch)
	best := 0
	for id := range s.uses {
		if best != 0 && id > best {
			continue
		}
		if have, _ := s.schemaByID(id); identity(have) == want {
			best = id
		}
	}
	return best, best != 0
}

// referencedBy returns the IDs of live versions that reference subject's
// version, in ascending order.
func (s *state) referencedBy(subject string, version int) []int {
	var ids []int
	for _, subj := range s.subjects {
		for _, st := range subj.versions {
			if st.deleted {
				continue
			}
			for _, ref := range st.schema.References {
				if ref.Subject == subject && ref.Version == version && !slices.Contains(ids, st.id) {
					ids = append(ids, st.id)
				}
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// identity is what makes two schemas the same schema: the type, the text
// with insignificant whitespace and key order removed, and the references.
func identity(s sr.Schema) string {
	text := strings.TrimSpace(s.Schema)
	if s.Type != sr.TypeProtobuf {
		var v any
		if err := json.Unmarshal([]byte(s.Schema), &v); err == nil {
			if b, err := json.Marshal(v); err == nil {
				text = string(b)
			}
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
