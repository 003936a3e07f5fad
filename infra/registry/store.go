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
// SCHEMA, CONFIG and MODE are Confluent's; Confluent writes others too
// (NOOP, DELETE_SUBJECT, …), which the fold skips. MAX_ID is this
// registry's own, and a Confluent registry would skip it: see maxIDKey.
const (
	keySchema = "SCHEMA"
	keyConfig = "CONFIG"
	keyMode   = "MODE"
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

// configKey is the key of a compatibility level or a mode; a nil subject
// is the global one: {"keytype":"CONFIG","subject":null,"magic":0},
// {"keytype":"MODE","subject":"orders-value","magic":0}.
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

// modeValue is the value of a MODE record.
type modeValue struct {
	Mode string `json:"mode"`
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
func encodeConfigKey(subject string) []byte { return encodeLevelKey(keyConfig, subject) }

// encodeModeKey is the key of subject's mode; "" is the global mode.
func encodeModeKey(subject string) []byte { return encodeLevelKey(keyMode, subject) }

func encodeLevelKey(keyType, subject string) []byte {
	k := configKey{KeyType: keyType}
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

func encodeModeValue(mode string) []byte { return marshal(modeValue{Mode: mode}) }

// stored is one version of a subject.
type stored struct {
	id      int
	schema  sr.Schema
	deleted bool // soft-deleted
}

type subjectState struct {
	versions map[int]*stored
	level    *sr.CompatibilityLevel // its own level, if it has one
	mode     *string                // its own mode, if it has one
}

type svKey struct {
	subject string
	version int
}

// state is the fold of the topic: the latest value of every key, and what
// the registry derives from each schema once. It is only changed by apply,
// from the follower, in offset order.
type state struct {
	subjects map[string]*subjectState
	global   *sr.CompatibilityLevel // nil: the default, BACKWARD
	mode     *string                // the global mode; nil: READWRITE
	maxID    int                    // the highest ID ever seen, deleted or not
	uses     map[int]map[svKey]bool // ID → the versions (soft-deleted too) that hold it
	compiled map[int]*compiled      // ID → its schema compiled, while a version holds it
	ids      map[string][]int       // identity → the IDs that hold a schema with it, ascending
}

func newState() *state {
	return &state{subjects: map[string]*subjectState{}, uses: map[int]map[svKey]bool{},
		compiled: map[int]*compiled{}, ids: map[string][]int{}}
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
		subj := s.subject(*k.Subject)
		sch := sr.Schema{Schema: v.Schema, Type: v.SchemaType, References: v.References}
		subj.versions[k.Version] = &stored{id: v.ID, deleted: v.Deleted, schema: sch}
		if s.uses[v.ID] == nil {
			s.uses[v.ID] = map[svKey]bool{}
		}
		s.uses[v.ID][svKey{*k.Subject, k.Version}] = true
		if s.compiled[v.ID] == nil {
			deps, err := dependencies(s, sch.References)
			c := compile(sch, deps, err)
			s.compiled[v.ID] = c
			s.ids[c.identity] = insertSorted(s.ids[c.identity], v.ID)
		}
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
		if level != nil || s.subjects[*k.Subject] != nil {
			s.subject(*k.Subject).level = level
			s.gc(*k.Subject)
		}
	case keyMode:
		var mode *string
		if value != nil {
			var v modeValue
			if err := json.Unmarshal(value, &v); err != nil {
				return fmt.Errorf("mode value %q: %w", value, err)
			}
			mode = &v.Mode
		}
		if k.Subject == nil {
			s.mode = mode
			return nil
		}
		if mode != nil || s.subjects[*k.Subject] != nil {
			s.subject(*k.Subject).mode = mode
			s.gc(*k.Subject)
		}
	}
	return nil
}

// subject returns a subject's state, created empty if it has none.
func (s *state) subject(name string) *subjectState {
	subj := s.subjects[name]
	if subj == nil {
		subj = &subjectState{versions: map[int]*stored{}}
		s.subjects[name] = subj
	}
	return subj
}

func insertSorted(ids []int, id int) []int {
	i, found := slices.BinarySearch(ids, id)
	if found {
		return ids
	}
	return slices.Insert(ids, i, id)
}

// dropVersion forgets a version and its use of its ID, and the ID's
// compiled schema once no version holds it.
func (s *state) dropVersion(subject string, version int) {
	subj := s.subjects[subject]
	if subj == nil {
		return
	}
	if old := subj.versions[version]; old != nil {
		delete(s.uses[old.id], svKey{subject, version})
		if len(s.uses[old.id]) == 0 {
			delete(s.uses, old.id)
			if c := s.compiled[old.id]; c != nil {
				s.ids[c.identity] = slices.DeleteFunc(s.ids[c.identity], func(id int) bool { return id == old.id })
				if len(s.ids[c.identity]) == 0 {
					delete(s.ids, c.identity)
				}
				delete(s.compiled, old.id)
			}
		}
		delete(subj.versions, version)
	}
	s.gc(subject)
}

// gc forgets a subject that holds neither a version nor a level nor a
// mode.
func (s *state) gc(subject string) {
	if subj := s.subjects[subject]; subj != nil && len(subj.versions) == 0 && subj.level == nil && subj.mode == nil {
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

// Modes: READWRITE takes writes; READONLY refuses them. Confluent's IMPORT
// (writes with the IDs of another registry) is not supported, and a topic
// that holds it refuses writes as READONLY does.
const (
	modeReadWrite = "READWRITE"
	modeReadOnly  = "READONLY"
)

// modeOf is the mode that applies to subject: its own, else the global
// one; "" is the global mode.
func (s *state) modeOf(subject string) string {
	if subj := s.subjects[subject]; subject != "" && subj != nil && subj.mode != nil {
		return *subj.mode
	}
	if s.mode != nil {
		return *s.mode
	}
	return modeReadWrite
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

// idOf returns the lowest ID of a schema with this identity, if any version
// holds one: Confluent gives an identical schema the same ID in every
// subject.
func (s *state) idOf(identity string) (int, bool) {
	if ids := s.ids[identity]; len(ids) > 0 {
		return ids[0], true
	}
	return 0, false
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
