// Package registry runs a Confluent-compatible Schema Registry inside the
// process, for the embedded (no Docker) stack.
//
// Storage and most of the REST surface come from franz-go's srfake, which
// approves every schema change. A registry that never refuses would let an
// incompatible event schema reach the topics locally and only fail against a
// real Confluent registry, so this package checks Avro compatibility itself
// (with hamba/avro) in front of srfake and answers like Confluent does.
package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// maxBody matches srfake's own request limit, so both layers agree on what
// is too large.
const maxBody = 1 << 20

// contentType is what Confluent sends, and what clients expect back.
const contentType = "application/vnd.schemaregistry.v1+json"

// Registry is an in-memory Schema Registry that enforces the configured
// compatibility level on Avro schemas.
type Registry struct {
	fake    *srfake.Registry
	handler http.Handler

	// mu makes check-then-register atomic: without it two registrations
	// could both be judged against the same latest version and both land.
	mu sync.Mutex
}

// New returns a registry whose global compatibility is BACKWARD, as
// Confluent's default.
func New() *Registry {
	r := &Registry{fake: srfake.NewRegistry(srfake.WithGlobalCompat(sr.CompatBackward))}

	mux := http.NewServeMux()
	// srfake also accepts every route under /contexts/{context}; guard those
	// too so the prefix is not a way around the checks.
	for _, prefix := range []string{"", "/contexts/{context}"} {
		mux.HandleFunc("POST "+prefix+"/subjects/{subject}/versions", r.handleRegister)
		mux.HandleFunc("POST "+prefix+"/compatibility/subjects/{subject}/versions/{version}", r.handleCheckVersion)
		mux.HandleFunc("POST "+prefix+"/compatibility/subjects/{subject}/versions", r.handleCheckSubject)
	}
	mux.Handle("/", r.fake.Handler())
	r.handler = mux
	return r
}

// Handler serves the Confluent Schema Registry REST API.
func (r *Registry) Handler() http.Handler { return r.handler }

// handleRegister refuses a new Avro version that breaks the subject's
// compatibility level with 409, and otherwise lets srfake store it.
func (r *Registry) handleRegister(w http.ResponseWriter, req *http.Request) {
	schema, ok := readAvroBody(w, req)
	if !ok {
		r.fake.Handler().ServeHTTP(w, req)
		return
	}
	subject := req.PathValue("subject")

	r.mu.Lock()
	defer r.mu.Unlock()

	// Re-registering a known schema must keep returning its ID even if the
	// level has since become stricter, so it skips the check entirely.
	if r.isRegistered(subject, schema) {
		r.fake.Handler().ServeHTTP(w, req)
		return
	}
	candidate, err := r.parse(schema)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, sr.ErrInvalidSchema.Code, "Invalid Avro schema: "+err.Error())
		return
	}
	level, versions, err := r.subjectState(subject)
	if err != nil {
		writeError(w, http.StatusInternalServerError, sr.ErrStoreError.Code, err.Error())
		return
	}
	if problems := r.problems(subject, candidate, level, against(level, versions)); len(problems) > 0 {
		writeError(w, http.StatusConflict, sr.ErrIncompatibleSchema.Code, fmt.Sprintf(
			"Schema being registered is incompatible with an earlier schema for subject \"%s\", details: [%s]",
			subject, strings.Join(problems, ", ")))
		return
	}
	r.fake.Handler().ServeHTTP(w, req)
}

// handleCheckVersion answers whether a schema is compatible with one
// existing version ("latest" or a number), in the direction(s) of the
// subject's level.
func (r *Registry) handleCheckVersion(w http.ResponseWriter, req *http.Request) {
	schema, ok := readAvroBody(w, req)
	if !ok {
		r.fake.Handler().ServeHTTP(w, req)
		return
	}
	subject := req.PathValue("subject")
	wanted := req.PathValue("version")
	wantedNum, err := strconv.Atoi(wanted)
	if wanted != "latest" && (err != nil || wantedNum < 1) {
		writeError(w, http.StatusUnprocessableEntity, sr.ErrInvalidVersion.Code,
			fmt.Sprintf("The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"", wanted))
		return
	}

	r.mu.Lock()
	defer r.mu.Unlock()

	level, versions, err := r.subjectState(subject)
	if err != nil {
		writeError(w, http.StatusInternalServerError, sr.ErrStoreError.Code, err.Error())
		return
	}
	if len(versions) == 0 {
		writeError(w, http.StatusNotFound, sr.ErrSubjectNotFound.Code, fmt.Sprintf("Subject '%s' not found.", subject))
		return
	}
	target := versions[len(versions)-1]
	if wanted != "latest" {
		target = wantedNum
		if !slices.Contains(versions, target) {
			writeError(w, http.StatusNotFound, sr.ErrVersionNotFound.Code, fmt.Sprintf("Version %d not found.", target))
			return
		}
	}
	candidate, err := r.parse(schema)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, sr.ErrInvalidSchema.Code, "Invalid Avro schema: "+err.Error())
		return
	}
	writeVerdict(w, r.problems(subject, candidate, level, []int{target}))
}

// handleCheckSubject answers whether registering the schema would succeed:
// the same check as registration, against the versions the level covers. A
// subject with no versions accepts anything, as registration would.
func (r *Registry) handleCheckSubject(w http.ResponseWriter, req *http.Request) {
	schema, ok := readAvroBody(w, req)
	if !ok {
		r.fake.Handler().ServeHTTP(w, req)
		return
	}
	subject := req.PathValue("subject")

	r.mu.Lock()
	defer r.mu.Unlock()

	candidate, err := r.parse(schema)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, sr.ErrInvalidSchema.Code, "Invalid Avro schema: "+err.Error())
		return
	}
	level, versions, err := r.subjectState(subject)
	if err != nil {
		writeError(w, http.StatusInternalServerError, sr.ErrStoreError.Code, err.Error())
		return
	}
	writeVerdict(w, r.problems(subject, candidate, level, against(level, versions)))
}

// readAvroBody reads the request body and puts it back for srfake. ok is
// false when the body is not an Avro schema request this package checks
// (other schema types, or JSON srfake will reject with its own error).
func readAvroBody(w http.ResponseWriter, req *http.Request) (schema sr.Schema, ok bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxBody))
	req.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return sr.Schema{}, false
	}
	if err := json.Unmarshal(body, &schema); err != nil || schema.Type != sr.TypeAvro {
		return sr.Schema{}, false
	}
	return schema, true
}

// isRegistered asks srfake whether this exact schema is already a live
// version of the subject, using the same equality srfake applies when it
// registers.
func (r *Registry) isRegistered(subject string, s sr.Schema) bool {
	// Only the fields the lookup route accepts: the register body may carry
	// more (id, version, metadata).
	lookup, err := json.Marshal(sr.Schema{Schema: s.Schema, Type: s.Type, References: s.References})
	if err != nil {
		return false
	}
	status, err := r.ask(http.MethodPost, "/subjects/"+url.PathEscape(subject), lookup, nil)
	return err == nil && status == http.StatusOK
}

// subjectState returns the subject's effective level (its own, else the
// global one) and its live versions in ascending order. A missing subject has
// no versions.
func (r *Registry) subjectState(subject string) (level sr.CompatibilityLevel, versions []int, err error) {
	path := "/config/" + url.PathEscape(subject)
	var cfg struct {
		Level sr.CompatibilityLevel `json:"compatibilityLevel"`
	}
	if code, err := r.ask(http.MethodGet, path, nil, &cfg); err != nil || code != http.StatusOK {
		return 0, nil, fmt.Errorf("reading compatibility level of subject %q: %w", subject, failure(code, err))
	}

	path = "/subjects/" + url.PathEscape(subject) + "/versions"
	code, err := r.ask(http.MethodGet, path, nil, &versions)
	switch {
	case err == nil && code == http.StatusNotFound:
		return cfg.Level, nil, nil
	case err != nil || code != http.StatusOK:
		return 0, nil, fmt.Errorf("listing versions of subject %q: %w", subject, failure(code, err))
	}
	return cfg.Level, versions, nil
}

// ask sends a request straight to srfake and decodes a 200 answer into
// into. Going through srfake's handler keeps this package off its internals.
func (r *Registry) ask(method, path string, body []byte, into any) (int, error) {
	req, err := http.NewRequest(method, "http://registry.internal"+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	r.fake.Handler().ServeHTTP(rec, req)
	if rec.Code == http.StatusOK && into != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), into); err != nil {
			return rec.Code, err
		}
	}
	return rec.Code, nil
}

// failure explains why an internal srfake request did not give a usable
// answer.
func failure(code int, err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("unexpected status %d", code)
}

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

// problems checks candidate against the given versions of the subject and
// returns one description per failure, empty when compatible.
func (r *Registry) problems(subject string, candidate avro.Schema, level sr.CompatibilityLevel, versions []int) []string {
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
		old, ok := r.fake.GetSchema(subject, v)
		if !ok {
			continue // deleted since it was listed
		}
		if old.Type != sr.TypeAvro {
			report(v, fmt.Sprintf("version %d is a %s schema, not AVRO", v, old.Type))
			continue
		}
		previous, err := r.parse(old.Schema)
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

// parse parses a schema with its references into a cache of its own. The
// global cache would let two versions of the same named record overwrite
// each other, so old and new would be compared with the wrong definitions.
func (r *Registry) parse(s sr.Schema) (avro.Schema, error) {
	cache := &avro.SchemaCache{}
	if err := r.loadReferences(s.References, cache, map[string]bool{}); err != nil {
		return nil, err
	}
	return avro.ParseWithCache(s.Schema, "", cache)
}

// loadReferences parses referenced schemas (and theirs, depth first) into
// cache so the named types they define resolve. seen stops a schema that is
// reached twice from being parsed twice.
func (r *Registry) loadReferences(refs []sr.SchemaReference, cache *avro.SchemaCache, seen map[string]bool) error {
	for _, ref := range refs {
		key := ref.Subject + "\x00" + strconv.Itoa(ref.Version)
		if seen[key] {
			continue
		}
		seen[key] = true
		dep, ok := r.fake.GetSchema(ref.Subject, ref.Version)
		if !ok {
			return fmt.Errorf("reference %q: subject %q version %d not found", ref.Name, ref.Subject, ref.Version)
		}
		if err := r.loadReferences(dep.References, cache, seen); err != nil {
			return err
		}
		if _, err := avro.ParseWithCache(dep.Schema.Schema, "", cache); err != nil {
			return fmt.Errorf("reference %q: %w", ref.Name, err)
		}
	}
	return nil
}

// writeVerdict answers a compatibility check; messages are only sent when
// there is something to explain.
func writeVerdict(w http.ResponseWriter, problems []string) {
	respond(w, http.StatusOK, struct {
		IsCompatible bool     `json:"is_compatible"`
		Messages     []string `json:"messages,omitempty"`
	}{len(problems) == 0, problems})
}

// writeError answers in Confluent's error shape, which sr.Client decodes
// into *sr.ResponseError.
func writeError(w http.ResponseWriter, status, code int, message string) {
	respond(w, status, struct {
		ErrorCode int    `json:"error_code"`
		Message   string `json:"message"`
	}{code, message})
}

func respond(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
