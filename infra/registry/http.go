package registry

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

// maxBody is the largest request body read, as srfake and Confluent's
// defaults allow.
const maxBody = 1 << 20

// contentType is what Confluent sends, and what clients expect back.
const contentType = "application/vnd.schemaregistry.v1+json"

// handler answers one request with a body to encode as JSON (rawText is
// sent as it is) or an error, an *apiError for Confluent's error answers.
type handler func(req *http.Request) (any, error)

// rawText is a body sent as it is: the bare schema endpoints answer with
// the schema's text.
type rawText string

// reading runs a handler that only reads the state, under the read lock.
func (r *Registry) reading(h handler) handler {
	return func(req *http.Request) (any, error) {
		r.mu.RLock()
		defer r.mu.RUnlock()
		return h(req)
	}
}

// routes is the REST surface. Writes need a writer when auth is on.
func (r *Registry) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range []struct {
		pattern string
		write   bool
		h       handler
	}{
		{"GET /{$}", false, func(*http.Request) (any, error) { return struct{}{}, nil }},
		{"GET /subjects", false, r.listSubjects},
		{"GET /subjects/{subject}/versions", false, r.listVersions},
		{"GET /subjects/{subject}/versions/{version}", false, r.getVersion},
		{"GET /subjects/{subject}/versions/{version}/schema", false, r.getVersionText},
		{"GET /subjects/{subject}/versions/{version}/referencedby", false, r.getReferencedBy},
		{"POST /subjects/{subject}/versions", true, r.register},
		{"POST /subjects/{subject}", false, r.lookup},
		{"DELETE /subjects/{subject}", true, r.deleteSubject},
		{"DELETE /subjects/{subject}/versions/{version}", true, r.deleteVersion},
		{"GET /schemas", false, r.listSchemas},
		{"GET /schemas/ids/{id}", false, r.getByID},
		{"GET /schemas/ids/{id}/schema", false, r.getTextByID},
		{"GET /schemas/ids/{id}/versions", false, r.getVersionsByID},
		{"GET /schemas/ids/{id}/subjects", false, r.getSubjectsByID},
		{"GET /schemas/types", false, func(*http.Request) (any, error) { return []string{"AVRO"}, nil }},
		{"GET /config", false, r.getGlobalConfig},
		{"PUT /config", true, r.putConfig},
		{"DELETE /config", true, r.deleteConfig},
		{"GET /config/{subject}", false, r.getSubjectConfig},
		{"PUT /config/{subject}", true, r.putConfig},
		{"DELETE /config/{subject}", true, r.deleteConfig},
		{"POST /compatibility/subjects/{subject}/versions/{version}", false, r.checkVersion},
		{"POST /compatibility/subjects/{subject}/versions", false, r.checkSubject},
		{"GET /mode", false, r.getMode},
		{"PUT /mode", true, r.putMode},
		{"DELETE /mode", true, r.deleteMode},
		{"GET /mode/{subject}", false, r.getMode},
		{"PUT /mode/{subject}", true, r.putMode},
		{"DELETE /mode/{subject}", true, r.deleteMode},
		{"GET /contexts", false, func(*http.Request) (any, error) { return []string{defaultContext}, nil }},
	} {
		h := rt.h
		if strings.HasPrefix(rt.pattern, "GET ") {
			h = r.reading(h)
		}
		mux.Handle(rt.pattern, r.serve(rt.write, h))
	}
	mux.Handle("/", r.serve(false, func(*http.Request) (any, error) {
		return nil, errf(http.StatusNotFound, http.StatusNotFound, "HTTP 404 Not Found")
	}))
	return inContext(mux)
}

// serve checks the caller, the subject's name and the registry's
// readiness, then answers with h.
func (r *Registry) serve(write bool, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if err := r.authorize(req, write); err != nil {
			if err.status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Basic realm="SchemaRegistry"`)
			}
			writeError(w, err)
			return
		}
		if err := checkSubject(req.PathValue("subject")); err != nil {
			writeError(w, err)
			return
		}
		if err := r.Ready(); err != nil {
			writeError(w, errf(http.StatusServiceUnavailable, 50003, "%v", err))
			return
		}
		body, err := h(req)
		var ae *apiError
		switch {
		case errors.As(err, &ae):
			writeError(w, ae)
		case err != nil: // a bug: handlers answer *apiError
			r.log.Error("schema registry request failed", "method", req.Method, "path", req.URL.Path, "err", err)
			writeError(w, errf(http.StatusInternalServerError, sr.ErrStoreError.Code, "Internal error; see the registry's log"))
		default:
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(http.StatusOK)
			if text, ok := body.(rawText); ok {
				_, _ = io.WriteString(w, string(text))
				return
			}
			_ = json.NewEncoder(w).Encode(body)
		}
	})
}

// authorize lets everyone in when Config.Users is nil; otherwise the
// caller must be a known user, and a writer to write.
func (r *Registry) authorize(req *http.Request, write bool) *apiError {
	if r.cfg.Users == nil {
		return nil
	}
	user, pass, ok := req.BasicAuth()
	want, known := r.cfg.Users[user]
	if !ok || !known || subtle.ConstantTimeCompare([]byte(pass), []byte(want)) != 1 {
		return errf(http.StatusUnauthorized, http.StatusUnauthorized, "Unauthorized")
	}
	if write && !slices.Contains(r.cfg.Writers, user) {
		on := "Cluster: schema-registry"
		if s := req.PathValue("subject"); s != "" {
			on = "Subject: " + s
		}
		return errf(http.StatusForbidden, 40301, "User %s is denied operation Write on %s", user, on)
	}
	return nil
}

// apiError is an answer in Confluent's error shape, which sr.Client decodes
// into *sr.ResponseError.
type apiError struct {
	status int
	code   int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errf(status, code int, format string, a ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, a...)}
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(struct {
		ErrorCode int    `json:"error_code"`
		Message   string `json:"message"`
	}{e.code, e.msg})
}

func subjectNotFound(subject string) *apiError {
	return errf(http.StatusNotFound, sr.ErrSubjectNotFound.Code, "Subject '%s' not found.", subject)
}

func versionNotFound(version string) *apiError {
	return errf(http.StatusNotFound, sr.ErrVersionNotFound.Code, "Version %s not found.", version)
}

func schemaNotFound(what string) *apiError {
	return errf(http.StatusNotFound, sr.ErrSchemaNotFound.Code, "Schema %snot found", what)
}

// decodeBody decodes a JSON request body of at most maxBody bytes.
func decodeBody(req *http.Request, into any) error {
	return json.NewDecoder(http.MaxBytesReader(nil, req.Body, maxBody)).Decode(into)
}

// tooLarge is Confluent's answer to a schema too large to store.
func tooLarge(format string, a ...any) *apiError {
	return errf(http.StatusUnprocessableEntity, 42209, "Schema too large: "+format, a...)
}

// schemaRequest is the body of a registration, a lookup or a check.
type schemaRequest struct {
	Schema     string               `json:"schema"`
	SchemaType string               `json:"schemaType"`
	References []sr.SchemaReference `json:"references"`
	ID         int                  `json:"id"`
	Version    int                  `json:"version"`
}

func readSchema(req *http.Request) (sr.Schema, schemaRequest, error) {
	var body schemaRequest
	if err := decodeBody(req, &body); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return sr.Schema{}, body, tooLarge("the request body is over %d bytes", maxBody)
		}
		return sr.Schema{}, body, errf(http.StatusUnprocessableEntity, sr.ErrInvalidSchema.Code, "Invalid schema: %v", err)
	}
	var typ sr.SchemaType
	if err := typ.UnmarshalText([]byte(body.SchemaType)); err != nil || typ != sr.TypeAvro {
		return sr.Schema{}, body, errf(http.StatusUnprocessableEntity, sr.ErrInvalidSchema.Code,
			"Invalid schema type %s: this registry stores AVRO schemas only (GET /schemas/types)", body.SchemaType)
	}
	if strings.TrimSpace(body.Schema) == "" {
		return sr.Schema{}, body, errf(http.StatusUnprocessableEntity, sr.ErrInvalidSchema.Code, "Empty schema")
	}
	return sr.Schema{Schema: body.Schema, Type: typ, References: body.References}, body, nil
}

// parseVersion reads a version: a number from 1, or "latest" (or -1).
func parseVersion(s string) (version int, latest bool, err error) {
	if s == "latest" || s == "-1" {
		return 0, true, nil
	}
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil || v < 1 {
		return 0, false, errf(http.StatusUnprocessableEntity, sr.ErrInvalidVersion.Code,
			"The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"", s)
	}
	return int(v), false, nil
}

func flag(req *http.Request, name string) bool { return req.URL.Query().Get(name) == "true" }

// subjectSchema is a version as Confluent shows it.
type subjectSchema struct {
	Subject    string               `json:"subject"`
	Version    int                  `json:"version"`
	ID         int                  `json:"id"`
	SchemaType sr.SchemaType        `json:"schemaType,omitempty"` // omitted for Avro, which is 0
	References []sr.SchemaReference `json:"references,omitempty"`
	Schema     string               `json:"schema"`
}

func showVersion(subject string, version int, v *stored) subjectSchema {
	return subjectSchema{Subject: subject, Version: version, ID: v.id, SchemaType: v.schema.Type,
		References: v.schema.References, Schema: v.schema.Schema}
}

// resolve finds a subject's version named in the path: 40401 when the
// subject shows no version at all, 40402 when it lacks this one.
func resolve(st *state, subject, name string, deleted bool) (int, *stored, error) {
	version, latest, err := parseVersion(name)
	if err != nil {
		return 0, nil, err
	}
	visible := st.versions(subject, deleted)
	if len(visible) == 0 {
		return 0, nil, subjectNotFound(subject)
	}
	if latest {
		version = visible[len(visible)-1]
	}
	v := st.version(subject, version, deleted)
	if v == nil {
		return 0, nil, versionNotFound(name)
	}
	return version, v, nil
}

// --- reads -------------------------------------------------------------------

func (r *Registry) listSubjects(req *http.Request) (any, error) {
	lo, hi, err := page(req)
	if err != nil {
		return nil, err
	}
	deleted, only, prefix := flag(req, "deleted"), flag(req, "deletedOnly"), req.URL.Query().Get("subjectPrefix")
	out := []string{}
	for name := range r.st.subjects {
		live := len(r.st.versions(name, false)) > 0
		all := len(r.st.versions(name, true)) > 0
		if !strings.HasPrefix(name, prefix) || (only && (live || !all)) || (!only && !live && !(deleted && all)) {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return pageOf(out, lo, hi), nil
}

// page reads ?offset= (from 0, default 0) and ?limit= (default -1, every
// item), as Confluent's list endpoints take them: the items [lo, hi).
func page(req *http.Request) (lo, hi int, err error) {
	q := req.URL.Query()
	lo, hi = 0, -1
	if v := q.Get("offset"); v != "" {
		if lo, err = strconv.Atoi(v); err != nil || lo < 0 {
			return 0, 0, errf(http.StatusBadRequest, http.StatusBadRequest, "offset=%q: want a whole number from 0", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < -1 {
			return 0, 0, errf(http.StatusBadRequest, http.StatusBadRequest, "limit=%q: want a whole number from 0, or -1 for every item", v)
		} else if n >= 0 {
			hi = lo + n
		}
	}
	return lo, hi, nil
}

// pageOf is items[lo:hi], within items; hi -1 is the end.
func pageOf[T any](items []T, lo, hi int) []T {
	if hi < 0 || hi > len(items) {
		hi = len(items)
	}
	if lo > hi {
		lo = hi
	}
	return items[lo:hi]
}

func (r *Registry) listVersions(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	deleted, only := flag(req, "deleted"), flag(req, "deletedOnly")
	versions := r.st.versions(subject, deleted || only)
	if len(versions) == 0 {
		return nil, subjectNotFound(subject)
	}
	if only {
		versions = slices.DeleteFunc(versions, func(v int) bool { return r.st.version(subject, v, false) != nil })
	}
	return versions, nil
}

func (r *Registry) getVersion(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	version, v, err := resolve(r.st, subject, req.PathValue("version"), flag(req, "deleted"))
	if err != nil {
		return nil, err
	}
	return showVersion(subject, version, v), nil
}

func (r *Registry) getVersionText(req *http.Request) (any, error) {
	_, v, err := resolve(r.st, req.PathValue("subject"), req.PathValue("version"), flag(req, "deleted"))
	if err != nil {
		return nil, err
	}
	return rawText(v.schema.Schema), nil
}

func (r *Registry) getReferencedBy(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	version, _, err := resolve(r.st, subject, req.PathValue("version"), flag(req, "deleted"))
	if err != nil {
		return nil, err
	}
	return append([]int{}, r.st.referencedBy(subject, version)...), nil
}

// lookup answers POST /subjects/{subject}: the version of the subject that
// holds this very schema.
func (r *Registry) lookup(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	s, _, err := readSchema(req)
	if err != nil {
		return nil, err
	}
	c, err := r.prepare(s)
	if err != nil {
		return nil, err
	}
	deleted := flag(req, "deleted")
	r.mu.RLock()
	defer r.mu.RUnlock()
	versions := r.st.versions(subject, deleted)
	if len(versions) == 0 {
		return nil, subjectNotFound(subject)
	}
	for _, version := range versions {
		if v := r.st.version(subject, version, deleted); r.st.compiled[v.id].identity == c.identity {
			return showVersion(subject, version, v), nil
		}
	}
	return nil, schemaNotFound("")
}

// prepare compiles a schema a request brings, with the schemas it
// references as the state holds them: 422 unless it is Avro that parses.
// The parsing happens outside the lock, so that no request holds the
// follower or the writers back while it parses.
func (r *Registry) prepare(s sr.Schema) (candidate, error) {
	r.mu.RLock()
	deps, err := dependencies(r.st, s.References)
	r.mu.RUnlock()
	if err != nil {
		return candidate{}, err
	}
	c := compile(s, deps, nil)
	if c.avro == nil {
		return candidate{}, errf(http.StatusUnprocessableEntity, sr.ErrInvalidSchema.Code, "Invalid Avro schema: %v", c.err)
	}
	return candidate{s, c}, nil
}

// candidate is a schema a request brings, compiled.
type candidate struct {
	schema sr.Schema
	*compiled
}

func (r *Registry) listSchemas(req *http.Request) (any, error) {
	lo, hi, err := page(req)
	if err != nil {
		return nil, err
	}
	deleted, latestOnly, prefix := flag(req, "deleted"), flag(req, "latestOnly"), req.URL.Query().Get("subjectPrefix")
	names := make([]string, 0, len(r.st.subjects))
	for name := range r.st.subjects {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	out := []subjectSchema{}
	for _, name := range names {
		versions := r.st.versions(name, deleted)
		if latestOnly && len(versions) > 0 {
			versions = versions[len(versions)-1:]
		}
		for _, version := range versions {
			if hi >= 0 && len(out) >= hi {
				return out[lo:], nil
			}
			out = append(out, showVersion(name, version, r.st.version(name, version, true)))
		}
	}
	return pageOf(out, lo, hi), nil
}

// byID finds the schema of the ID in the path: 40403 when no version,
// live or soft-deleted, holds it. Deserializers send ?subject= to pick a
// context; with the default context only, it changes nothing.
func (r *Registry) byID(req *http.Request) (int, sr.Schema, error) {
	name := req.PathValue("id")
	id, err := strconv.Atoi(name)
	if err != nil {
		return 0, sr.Schema{}, schemaNotFound(name + " ")
	}
	s, ok := r.st.schemaByID(id)
	if !ok {
		return 0, sr.Schema{}, schemaNotFound(name + " ")
	}
	return id, s, nil
}

func (r *Registry) getByID(req *http.Request) (any, error) {
	_, s, err := r.byID(req)
	if err != nil {
		return nil, err
	}
	return struct {
		SchemaType sr.SchemaType        `json:"schemaType,omitempty"`
		References []sr.SchemaReference `json:"references,omitempty"`
		Schema     string               `json:"schema"`
	}{s.Type, s.References, s.Schema}, nil
}

func (r *Registry) getTextByID(req *http.Request) (any, error) {
	_, s, err := r.byID(req)
	if err != nil {
		return nil, err
	}
	return rawText(s.Schema), nil
}

func (r *Registry) getVersionsByID(req *http.Request) (any, error) {
	id, _, err := r.byID(req)
	if err != nil {
		return nil, err
	}
	type subjectVersion struct {
		Subject string `json:"subject"`
		Version int    `json:"version"`
	}
	out := []subjectVersion{}
	for _, k := range r.st.usesOf(id, flag(req, "deleted")) {
		out = append(out, subjectVersion{k.subject, k.version})
	}
	return out, nil
}

func (r *Registry) getSubjectsByID(req *http.Request) (any, error) {
	id, _, err := r.byID(req)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, k := range r.st.usesOf(id, flag(req, "deleted")) {
		if !slices.Contains(out, k.subject) {
			out = append(out, k.subject)
		}
	}
	return out, nil
}

func (r *Registry) getGlobalConfig(*http.Request) (any, error) {
	return levelAnswer{r.st.globalLevel().String()}, nil
}

// getSubjectConfig answers a subject's own level; without one, 40408, or
// the global level with ?defaultToGlobal=true.
func (r *Registry) getSubjectConfig(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	if subj := r.st.subjects[subject]; subj != nil && subj.level != nil {
		return levelAnswer{subj.level.String()}, nil
	}
	if flag(req, "defaultToGlobal") {
		return levelAnswer{r.st.globalLevel().String()}, nil
	}
	return nil, errf(http.StatusNotFound, sr.ErrSubjectLevelCompatibilityNotConfigured.Code,
		"Subject '%s' does not have subject-level compatibility configured", subject)
}

type levelAnswer struct {
	Level string `json:"compatibilityLevel"`
}

// checkVersion answers whether a schema is compatible with one existing
// version ("latest" or a number), in the direction(s) of the subject's
// level.
func (r *Registry) checkVersion(req *http.Request) (any, error) {
	subject, name := req.PathValue("subject"), req.PathValue("version")
	s, _, err := readSchema(req)
	r.mu.RLock()
	version, _, rerr := resolve(r.st, subject, name, false)
	r.mu.RUnlock()
	if rerr != nil {
		return nil, rerr
	}
	if err != nil {
		return nil, err
	}
	return r.verdict(req, subject, s, func(*state) []int { return []int{version} })
}

// checkSubject answers whether registering the schema would pass the
// check: against the versions the level covers. A subject with no versions
// accepts anything, as registration would.
func (r *Registry) checkSubject(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	s, _, err := readSchema(req)
	if err != nil {
		return nil, err
	}
	return r.verdict(req, subject, s, func(st *state) []int {
		return against(st.level(subject), st.versions(subject, false))
	})
}

// verdict checks s against the versions of subject that which picks;
// messages come with ?verbose=true, as Confluent sends them.
func (r *Registry) verdict(req *http.Request, subject string, s sr.Schema, which func(*state) []int) (any, error) {
	c, err := r.prepare(s)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	found := problems(r.st, subject, c.avro, r.st.level(subject), which(r.st))
	r.mu.RUnlock()
	out := struct {
		IsCompatible bool     `json:"is_compatible"`
		Messages     []string `json:"messages,omitempty"`
	}{IsCompatible: len(found) == 0}
	if flag(req, "verbose") {
		out.Messages = append([]string{}, found...)
	}
	return out, nil
}

// --- writes ------------------------------------------------------------------

// liveVersionOf returns the live version of subject that holds a schema
// with this identity.
func liveVersionOf(st *state, subject, identity string) (*stored, bool) {
	for _, version := range st.versions(subject, false) {
		if v := st.version(subject, version, false); st.compiled[v.id].identity == identity {
			return v, true
		}
	}
	return nil, false
}

// writable refuses a change to a subject (or, for "", to the registry)
// unless its mode is READWRITE.
func writable(st *state, subject string) error {
	mode := st.modeOf(subject)
	if mode == modeReadWrite {
		return nil
	}
	what := "The registry"
	if subject != "" {
		what = fmt.Sprintf("Subject '%s'", subject)
	}
	return errf(http.StatusUnprocessableEntity, sr.ErrOperationNotPermitted.Code, "%s is in %s mode", what, mode)
}

// register answers POST /subjects/{subject}/versions. A schema the subject
// holds already keeps its ID, unchecked even if the level has become
// stricter since; a new one is checked, then written. Neither happens
// unless the subject's mode is READWRITE, as Confluent has it.
func (r *Registry) register(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	s, body, err := readSchema(req)
	if err != nil {
		return nil, err
	}
	if body.ID > 0 || body.Version > 0 {
		return nil, errf(http.StatusUnprocessableEntity, sr.ErrOperationNotPermitted.Code,
			"Overriding the schema id or version is only permitted in IMPORT mode, which this registry does not support")
	}
	type answer struct {
		ID int `json:"id"`
	}
	c, err := r.prepare(s)
	if err != nil {
		return nil, err
	}
	// Registering what is there already, as every `make schemas` does,
	// needs no write and so fences nobody.
	r.mu.RLock()
	err = writable(r.st, subject)
	v, ok := liveVersionOf(r.st, subject, c.identity)
	r.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	if ok {
		return answer{v.id}, nil
	}
	var id int
	err = r.write(req.Context(), func(st *state) ([]*kgo.Record, error) {
		if err := writable(st, subject); err != nil {
			return nil, err
		}
		if v, ok := liveVersionOf(st, subject, c.identity); ok {
			id = v.id
			return nil, nil
		}
		if _, err := dependencies(st, s.References); err != nil {
			return nil, err
		}
		level := st.level(subject)
		if found := problems(st, subject, c.avro, level, against(level, st.versions(subject, false))); len(found) > 0 {
			return nil, errf(http.StatusConflict, sr.ErrIncompatibleSchema.Code,
				"Schema being registered is incompatible with an earlier schema for subject \"%s\", details: [%s]",
				subject, strings.Join(found, ", "))
		}
		var known bool
		if id, known = st.idOf(c.identity); !known {
			id = st.maxID + 1
		}
		version := 1
		if all := st.versions(subject, true); len(all) > 0 {
			version = all[len(all)-1] + 1
		}
		return []*kgo.Record{record(encodeSchemaKey(subject, version),
			encodeSchemaValue(subject, version, &stored{id: id, schema: s}))}, nil
	})
	if err != nil {
		return nil, err
	}
	return answer{id}, nil
}

// referenced refuses to delete a version other schemas reference.
func referenced(st *state, subject string, version int) error {
	if ids := st.referencedBy(subject, version); len(ids) > 0 {
		return errf(http.StatusUnprocessableEntity, sr.ErrReferenceExists.Code,
			"One or more references exist to the schema {subject=%s,version=%d}: schema IDs %v", subject, version, ids)
	}
	return nil
}

// deleteSubject answers DELETE /subjects/{subject}: a soft delete of every
// live version, or with ?permanent=true, after a soft delete, tombstones
// for every version and for the subject's level.
func (r *Registry) deleteSubject(req *http.Request) (any, error) {
	subject, permanent := req.PathValue("subject"), flag(req, "permanent")
	var deleted []int
	err := r.write(req.Context(), func(st *state) ([]*kgo.Record, error) {
		all, live := st.versions(subject, true), st.versions(subject, false)
		if len(all) == 0 {
			return nil, subjectNotFound(subject)
		}
		if err := writable(st, subject); err != nil {
			return nil, err
		}
		var recs []*kgo.Record
		switch {
		case !permanent && len(live) == 0:
			return nil, errf(http.StatusNotFound, sr.ErrSubjectSoftDeleted.Code,
				"Subject '%s' was soft deleted.Set permanent=true to delete permanently", subject)
		case !permanent:
			deleted = live
			for _, version := range live {
				v := *st.version(subject, version, false)
				v.deleted = true
				recs = append(recs, record(encodeSchemaKey(subject, version), encodeSchemaValue(subject, version, &v)))
			}
		case len(live) > 0:
			return nil, errf(http.StatusNotFound, sr.ErrSubjectNotSoftDeleted.Code,
				"Subject '%s' was not deleted first before being permanently deleted", subject)
		default:
			deleted = all
			for _, version := range all {
				recs = append(recs, record(encodeSchemaKey(subject, version), nil))
			}
			if st.subjects[subject].level != nil {
				recs = append(recs, record(encodeConfigKey(subject), nil))
			}
			recs = append(recs, maxIDRecord(st))
		}
		for _, version := range deleted {
			if err := referenced(st, subject, version); err != nil {
				return nil, err
			}
		}
		return recs, nil
	})
	if err != nil {
		return nil, err
	}
	return deleted, nil
}

// deleteVersion answers DELETE /subjects/{subject}/versions/{version}: a
// soft delete, or with ?permanent=true, after a soft delete, a tombstone.
func (r *Registry) deleteVersion(req *http.Request) (any, error) {
	subject, name, permanent := req.PathValue("subject"), req.PathValue("version"), flag(req, "permanent")
	_, latest, err := parseVersion(name)
	if err != nil {
		return nil, err
	}
	var version int
	err = r.write(req.Context(), func(st *state) ([]*kgo.Record, error) {
		// A soft-deleted version is found too, to say so; "latest" is
		// the latest live one for a soft delete.
		var v *stored
		var err error
		if version, v, err = resolve(st, subject, name, permanent || !latest); err != nil {
			return nil, err
		}
		if err := writable(st, subject); err != nil {
			return nil, err
		}
		if err := referenced(st, subject, version); err != nil {
			return nil, err
		}
		key := encodeSchemaKey(subject, version)
		switch {
		case !permanent && v.deleted:
			return nil, errf(http.StatusNotFound, sr.ErrSchemaVersionSoftDeleted.Code,
				"Subject '%s' Version %d was soft deleted.Set permanent=true to delete permanently", subject, version)
		case !permanent:
			soft := *v
			soft.deleted = true
			return []*kgo.Record{record(key, encodeSchemaValue(subject, version, &soft))}, nil
		case !v.deleted:
			return nil, errf(http.StatusNotFound, sr.ErrSchemaVersionNotSoftDeleted.Code,
				"Subject '%s' Version %d was not deleted first before being permanently deleted", subject, version)
		default:
			return []*kgo.Record{record(key, nil), maxIDRecord(st)}, nil
		}
	})
	if err != nil {
		return nil, err
	}
	return version, nil
}

// putConfig sets the global level (PUT /config) or a subject's.
func (r *Registry) putConfig(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	var body struct {
		Compatibility      string `json:"compatibility"`
		CompatibilityLevel string `json:"compatibilityLevel"`
	}
	err := decodeBody(req, &body)
	name := body.Compatibility
	if name == "" {
		name = body.CompatibilityLevel // as GET /config spells it
	}
	var level sr.CompatibilityLevel
	if err == nil {
		err = level.UnmarshalText([]byte(name))
	}
	if err != nil || name == "" {
		return nil, errf(http.StatusUnprocessableEntity, sr.ErrInvalidCompatibilityLevel.Code,
			"Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive")
	}
	err = r.write(req.Context(), func(st *state) ([]*kgo.Record, error) {
		current := st.global
		if subject != "" {
			current = nil
			if subj := st.subjects[subject]; subj != nil {
				current = subj.level
			}
		}
		if current != nil && *current == level {
			return nil, nil
		}
		return []*kgo.Record{record(encodeConfigKey(subject), encodeConfigValue(level))}, nil
	})
	if err != nil {
		return nil, err
	}
	return struct {
		Compatibility string `json:"compatibility"`
	}{level.String()}, nil
}

// deleteConfig removes a subject's own level (DELETE /config/{subject}),
// or the global one (DELETE /config), which goes back to BACKWARD. It
// answers the level that was removed.
func (r *Registry) deleteConfig(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	var was sr.CompatibilityLevel
	err := r.write(req.Context(), func(st *state) ([]*kgo.Record, error) {
		if subject == "" {
			was = st.globalLevel()
			if st.global == nil {
				return nil, nil
			}
		} else {
			subj := st.subjects[subject]
			if subj == nil || subj.level == nil {
				return nil, subjectNotFound(subject)
			}
			was = *subj.level
		}
		return []*kgo.Record{record(encodeConfigKey(subject), nil)}, nil
	})
	if err != nil {
		return nil, err
	}
	return levelAnswer{was.String()}, nil
}
