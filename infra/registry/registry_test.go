package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr"
)

// Versions of one named record. They share the full name shop.test.Order on
// purpose: parsing must keep each version's definition apart.
const (
	orderID          = `{"type":"record","name":"Order","namespace":"shop.test","fields":[{"name":"id","type":"string"}]}`
	orderIDSpaced    = `{ "type": "record", "name": "Order", "namespace": "shop.test", "fields": [ {"name": "id", "type": "string"} ] }`
	orderEmail       = `{"type":"record","name":"Order","namespace":"shop.test","fields":[{"name":"id","type":"string"},{"name":"email","type":"string"}]}`
	orderEmailDef    = `{"type":"record","name":"Order","namespace":"shop.test","fields":[{"name":"id","type":"string"},{"name":"email","type":"string","default":""}]}`
	orderNote        = `{"type":"record","name":"Order","namespace":"shop.test","fields":[{"name":"id","type":"string"},{"name":"note","type":"string"}]}`
	orderNoteDef     = `{"type":"record","name":"Order","namespace":"shop.test","fields":[{"name":"id","type":"string"},{"name":"note","type":"string","default":""}]}`
	orderBString     = `{"type":"record","name":"Order","namespace":"shop.test","fields":[{"name":"id","type":"string"},{"name":"b","type":"string","default":""}]}`
	orderBInt        = `{"type":"record","name":"Order","namespace":"shop.test","fields":[{"name":"id","type":"string"},{"name":"b","type":"int","default":0}]}`
	unknownFieldType = `{"type":"record","name":"Order","namespace":"shop.test","fields":[{"name":"id","type":"no.such.Type"}]}`

	money       = `{"type":"record","name":"Money","namespace":"shop.test","fields":[{"name":"cents","type":"long"}]}`
	payment     = `{"type":"record","name":"Payment","namespace":"shop.test","fields":[{"name":"amount","type":"shop.test.Money"}]}`
	paymentUser = `{"type":"record","name":"Payment","namespace":"shop.test","fields":[{"name":"amount","type":"shop.test.Money"},{"name":"user","type":"long"}]}`

	purged = `{"type":"record","name":"Purged","namespace":"shop.test","fields":[{"name":"x","type":"int"}]}`

	jsonStrict = `{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}`
	jsonBadKey = `{"type":"object","properties":{"id":{"type":"no-such-type"}},"minLength":"long"}`
	protoText  = `syntax = "proto3"; message Order { string id = 1; }`
)

const subject = "orders-value"

var moneyRef = []sr.SchemaReference{{Name: "shop.test.Money", Subject: "money-value", Version: 1}}

// start serves a fresh registry on a fresh 3-broker cluster and returns a
// real client for it.
func start(t *testing.T) (*sr.Client, string) {
	t.Helper()
	return serve(t, open(t, newCluster(t, 3), Config{}))
}

// newCluster is an embedded Kafka cluster that stops when the test ends.
func newCluster(t *testing.T, brokers int) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// open starts a ready registry instance on c, closed when the test ends
// (before c).
func open(t *testing.T, c *kfake.Cluster, cfg Config) *Registry {
	t.Helper()
	cfg.Brokers = c.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	if err := r.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// serve serves r over HTTP and returns a client of it and its URL.
func serve(t *testing.T, r *Registry) (*sr.Client, string) {
	t.Helper()
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(srv.Close)
	// Generous: under -race, 2×20 registrations queued on two instances
	// take longer than the client's default 5 s.
	cl, err := sr.NewClient(sr.URLs(srv.URL), sr.HTTPClient(&http.Client{Timeout: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	return cl, srv.URL
}

func setLevel(t *testing.T, cl *sr.Client, level sr.CompatibilityLevel, subjects ...string) {
	t.Helper()
	for _, res := range cl.SetCompatibility(context.Background(), sr.SetCompatibility{Level: level}, subjects...) {
		if res.Err != nil {
			t.Fatalf("set %v on %q: %v", level, res.Subject, res.Err)
		}
	}
}

// wantResponseError fails unless err is the registry answering with the
// given HTTP status and Confluent error code.
func wantResponseError(t *testing.T, err error, status, code int) *sr.ResponseError {
	t.Helper()
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("want *sr.ResponseError %d/%d, got %T: %v", status, code, err, err)
	}
	if re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("want status %d code %d, got status %d code %d: %s", status, code, re.StatusCode, re.ErrorCode, re.Message)
	}
	return re
}

func TestRegister(t *testing.T) {
	// step registers one schema. A zero status means it must be accepted
	// with exactly id and version; otherwise it must be refused with that
	// HTTP status and error code.
	type step struct {
		subject string // defaults to the package's subject
		level   sr.CompatibilityLevel
		schema  string
		typ     sr.SchemaType
		refs    []sr.SchemaReference
		id      int
		version int
		status  int
		code    int
	}
	cases := []struct {
		name   string
		global sr.CompatibilityLevel // zero keeps the BACKWARD default
		steps  []step
	}{
		{name: "first version", steps: []step{
			{schema: orderID, id: 1, version: 1},
		}},
		{name: "identical schema is idempotent", steps: []step{
			{schema: orderID, id: 1, version: 1},
			{schema: orderID, id: 1, version: 1},
			{schema: orderIDSpaced, id: 1, version: 1},
		}},
		{name: "re-registration is not rechecked after the level tightens", steps: []step{
			{level: sr.CompatNone, schema: orderEmail, id: 1, version: 1},
			{schema: orderID, id: 2, version: 2},
			{level: sr.CompatBackward, schema: orderEmail, id: 1, version: 1},
		}},
		{name: "backward refuses a new field without default", steps: []step{
			{schema: orderID, id: 1, version: 1},
			{schema: orderEmail, status: 409, code: 409},
		}},
		{name: "backward accepts a new field with default", steps: []step{
			{schema: orderID, id: 1, version: 1},
			{schema: orderEmailDef, id: 2, version: 2},
		}},
		{name: "a refused schema uses no version", steps: []step{
			{schema: orderID, id: 1, version: 1},
			{schema: orderEmail, status: 409, code: 409},
			{schema: orderEmailDef, id: 2, version: 2},
		}},
		{name: "forward refuses removing a field old readers need", steps: []step{
			{level: sr.CompatForward, schema: orderNote, id: 1, version: 1},
			{schema: orderID, status: 409, code: 409},
		}},
		{name: "forward accepts removing a field that had a default", steps: []step{
			{level: sr.CompatForward, schema: orderNoteDef, id: 1, version: 1},
			{schema: orderID, id: 2, version: 2},
		}},
		{name: "forward accepts a new field without default", steps: []step{
			{level: sr.CompatForward, schema: orderID, id: 1, version: 1},
			{schema: orderEmail, id: 2, version: 2},
		}},
		{name: "full refuses a new field without default", steps: []step{
			{level: sr.CompatFull, schema: orderID, id: 1, version: 1},
			{schema: orderEmail, status: 409, code: 409},
		}},
		{name: "full refuses removing a field without default", steps: []step{
			{level: sr.CompatFull, schema: orderNote, id: 1, version: 1},
			{schema: orderID, status: 409, code: 409},
		}},
		{name: "full accepts a new field with default", steps: []step{
			{level: sr.CompatFull, schema: orderID, id: 1, version: 1},
			{schema: orderEmailDef, id: 2, version: 2},
		}},
		{name: "subject NONE accepts what global BACKWARD refuses", steps: []step{
			{subject: "loose-value", level: sr.CompatNone, schema: orderID, id: 1, version: 1},
			{subject: "loose-value", schema: orderEmail, id: 2, version: 2},
			{subject: "strict-value", schema: orderID, id: 1, version: 1},
			{subject: "strict-value", schema: orderEmail, status: 409, code: 409},
		}},
		{name: "global level applies without a subject level", global: sr.CompatForward, steps: []step{
			{schema: orderNote, id: 1, version: 1},
			{schema: orderID, status: 409, code: 409},
			{schema: orderNoteDef, id: 2, version: 2},
		}},
		{name: "backward only compares with the latest version", steps: []step{
			{schema: orderID, id: 1, version: 1},
			{schema: orderEmailDef, id: 2, version: 2},
			{schema: orderEmail, id: 3, version: 3},
		}},
		{name: "backward transitive compares with every version", steps: []step{
			{level: sr.CompatBackwardTransitive, schema: orderID, id: 1, version: 1},
			{schema: orderEmailDef, id: 2, version: 2},
			{schema: orderEmail, status: 409, code: 409},
		}},
		{name: "forward transitive compares with every version", steps: []step{
			{level: sr.CompatForwardTransitive, schema: orderNote, id: 1, version: 1},
			{schema: orderNoteDef, id: 2, version: 2},
			{schema: orderID, status: 409, code: 409},
		}},
		{name: "invalid Avro", steps: []step{
			{schema: unknownFieldType, status: 422, code: 42201},
			{schema: orderID, id: 1, version: 1},
			{schema: `{"type":"record","name":"Order"}`, status: 422, code: 42201},
		}},
		{name: "references resolve and are checked", steps: []step{
			{subject: "money-value", schema: money, id: 1, version: 1},
			{schema: payment, refs: moneyRef, id: 2, version: 1},
			{schema: paymentUser, refs: moneyRef, status: 409, code: 409},
		}},
		{name: "JSON Schema and Protobuf are refused, valid or not", steps: []step{
			{schema: jsonStrict, typ: sr.TypeJSON, status: 422, code: 42201},
			{schema: jsonBadKey, typ: sr.TypeJSON, status: 422, code: 42201},
			{schema: protoText, typ: sr.TypeProtobuf, status: 422, code: 42201},
			{schema: "garbage", typ: sr.TypeProtobuf, status: 422, code: 42201},
			{schema: orderID, id: 1, version: 1},
			{schema: jsonStrict, typ: sr.TypeJSON, status: 422, code: 42201},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl, _ := start(t)
			ctx := context.Background()
			wantGlobal := sr.CompatBackward
			if tc.global != 0 {
				setLevel(t, cl, tc.global)
				wantGlobal = tc.global
			}
			for i, st := range tc.steps {
				subj := st.subject
				if subj == "" {
					subj = subject
				}
				if st.level != 0 {
					setLevel(t, cl, st.level, subj)
				}
				got, err := cl.CreateSchema(ctx, subj, sr.Schema{Schema: st.schema, Type: st.typ, References: st.refs})
				if st.status != 0 {
					if err == nil {
						t.Fatalf("step %d: accepted as id %d version %d, want %d", i, got.ID, got.Version, st.status)
					}
					wantResponseError(t, err, st.status, st.code)
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if got.ID != st.id || got.Version != st.version {
					t.Fatalf("step %d: got id %d version %d, want id %d version %d", i, got.ID, got.Version, st.id, st.version)
				}
			}
			global := cl.Compatibility(ctx)
			if global[0].Err != nil || global[0].Level != wantGlobal {
				t.Fatalf("global level %v (err %v), want %v", global[0].Level, global[0].Err, wantGlobal)
			}
		})
	}
}

func TestCheckCompatibility(t *testing.T) {
	cases := []struct {
		name    string
		level   sr.CompatibilityLevel
		history []string // registered in order before the check
		subject string   // defaults to the package's subject
		version int      // -1 latest, -2 all versions
		schema  string
		want    bool
		message string // substring of the first message when not compatible
		status  int    // non-zero: the check must fail with this status and code
		code    int
		terse   bool // asked without ?verbose=true: Confluent sends no messages then
	}{
		{name: "backward latest, field without default", level: sr.CompatBackward, history: []string{orderID},
			version: -1, schema: orderEmail, want: false,
			message: "{oldSchemaVersion: 1, compatibility: 'BACKWARD', description: 'the new schema cannot read data written with version 1: reader field email is missing in writer schema and has no default'}"},
		{name: "backward latest, field with default", level: sr.CompatBackward, history: []string{orderID},
			version: -1, schema: orderEmailDef, want: true},
		{name: "forward latest, removed field", level: sr.CompatForward, history: []string{orderNote},
			version: -1, schema: orderID, want: false,
			message: "version 1 cannot read data written with the new schema"},
		{name: "none accepts anything", level: sr.CompatNone, history: []string{orderID},
			version: -1, schema: orderBInt, want: true},
		{name: "transitive, latest only", level: sr.CompatBackwardTransitive, history: []string{orderID, orderEmailDef},
			version: -1, schema: orderEmail, want: true},
		{name: "transitive, version 2", level: sr.CompatBackwardTransitive, history: []string{orderID, orderEmailDef},
			version: 2, schema: orderEmail, want: true},
		{name: "transitive, version 1", level: sr.CompatBackwardTransitive, history: []string{orderID, orderEmailDef},
			version: 1, schema: orderEmail, want: false, message: "oldSchemaVersion: 1,"},
		{name: "transitive, all versions", level: sr.CompatBackwardTransitive, history: []string{orderID, orderEmailDef},
			version: -2, schema: orderEmail, want: false, message: "oldSchemaVersion: 1,"},
		{name: "backward, all versions checks latest", level: sr.CompatBackward, history: []string{orderID, orderEmailDef},
			version: -2, schema: orderEmail, want: true},
		{name: "unknown subject, latest", level: sr.CompatBackward, subject: "nobody-value",
			version: -1, schema: orderID, status: 404, code: 40401},
		{name: "unknown subject, version 1", level: sr.CompatBackward, subject: "nobody-value",
			version: 1, schema: orderID, status: 404, code: 40401},
		{name: "unknown subject, all versions", level: sr.CompatBackward, subject: "nobody-value",
			version: -2, schema: orderEmail, want: true},
		{name: "unknown version", level: sr.CompatBackward, history: []string{orderID},
			version: 7, schema: orderID, status: 404, code: 40402},
		{name: "invalid Avro", level: sr.CompatBackward, history: []string{orderID},
			version: -1, schema: unknownFieldType, status: 422, code: 42201},
		{name: "not verbose, incompatible", level: sr.CompatBackward, history: []string{orderID},
			version: -1, schema: orderEmail, want: false, terse: true},
		{name: "not verbose, all versions", level: sr.CompatBackwardTransitive, history: []string{orderID, orderEmailDef},
			version: -2, schema: orderEmail, want: false, terse: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl, _ := start(t)
			ctx := context.Background()
			setLevel(t, cl, sr.CompatNone, subject)
			for _, s := range tc.history {
				if _, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: s}); err != nil {
					t.Fatal(err)
				}
			}
			setLevel(t, cl, tc.level, subject)
			subj := tc.subject
			if subj == "" {
				subj = subject
			}
			checkCtx := sr.WithParams(ctx, sr.Verbose)
			if tc.terse {
				checkCtx = ctx
			}
			got, err := cl.CheckCompatibility(checkCtx, subj, tc.version, sr.Schema{Schema: tc.schema})
			if tc.status != 0 {
				wantResponseError(t, err, tc.status, tc.code)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Is != tc.want {
				t.Fatalf("is_compatible %v, want %v (messages %q)", got.Is, tc.want, got.Messages)
			}
			if tc.want && len(got.Messages) != 0 {
				t.Fatalf("compatible but messages %q", got.Messages)
			}
			if tc.terse && len(got.Messages) != 0 {
				t.Fatalf("messages %q without ?verbose=true", got.Messages)
			}
			if !tc.want && !tc.terse && (len(got.Messages) == 0 || !strings.Contains(got.Messages[0], tc.message)) {
				t.Fatalf("messages %q, want first to contain %q", got.Messages, tc.message)
			}
		})
	}
}

// TestWireFormat checks the raw responses, which other Confluent clients
// parse too, and that the /contexts prefix neither skips the check nor
// lands in the default context unless it names it.
func TestWireFormat(t *testing.T) {
	cl, url := start(t)
	if _, err := cl.CreateSchema(context.Background(), subject, sr.Schema{Schema: orderID}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		path    string
		schema  string
		status  int
		code    int
		message string
	}{
		{name: "incompatible", path: "/subjects/" + subject + "/versions", schema: orderEmail, status: 409, code: 409,
			message: `Schema being registered is incompatible with an earlier schema for subject "orders-value", details: [` +
				`{oldSchemaVersion: 1, compatibility: 'BACKWARD', description: 'the new schema cannot read data written with version 1: ` +
				`reader field email is missing in writer schema and has no default'}]`},
		{name: "incompatible under the default context's prefix", path: "/contexts/./subjects/" + subject + "/versions", schema: orderEmail,
			status: 409, code: 409},
		{name: "another context", path: "/contexts/.shop/subjects/" + subject + "/versions", schema: orderEmailDef,
			status: 422, code: 42208, message: `Context ".shop" is not supported: this registry has the default context "." only`},
		{name: "invalid Avro", path: "/subjects/" + subject + "/versions", schema: unknownFieldType, status: 422, code: 42201},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]string{"schema": tc.schema})
			resp, err := http.Post(url+tc.path, "application/vnd.schemaregistry.v1+json", strings.NewReader(string(body)))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.schemaregistry.v1+json" {
				t.Fatalf("content type %q", ct)
			}
			var got struct {
				ErrorCode *int    `json:"error_code"`
				Message   *string `json:"message"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if got.ErrorCode == nil || *got.ErrorCode != tc.code || got.Message == nil {
				t.Fatalf("body %+v, want error_code %d and a message", got, tc.code)
			}
			if tc.message != "" && *got.Message != tc.message {
				t.Fatalf("message\n got %s\nwant %s", *got.Message, tc.message)
			}
		})
	}
}

// TestConcurrentRegistrations races, on many subjects at once, two schemas
// that are each compatible with version 1 but not with each other: on every
// subject exactly one of them may be stored.
func TestConcurrentRegistrations(t *testing.T) {
	cl, _ := start(t)
	ctx := context.Background()
	const subjects = 25
	for i := range subjects {
		if _, err := cl.CreateSchema(ctx, fmt.Sprintf("race-%d-value", i), sr.Schema{Schema: orderID}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for i := range subjects {
		for _, schema := range []string{orderBString, orderBInt} {
			wg.Go(func() {
				<-start
				_, err := cl.CreateSchema(ctx, fmt.Sprintf("race-%d-value", i), sr.Schema{Schema: schema})
				var re *sr.ResponseError
				if err != nil && (!errors.As(err, &re) || re.ErrorCode != 409) {
					t.Errorf("unexpected error: %v", err)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	for i := range subjects {
		versions, err := cl.SubjectVersions(ctx, fmt.Sprintf("race-%d-value", i))
		if err != nil {
			t.Fatal(err)
		}
		if len(versions) != 2 {
			t.Fatalf("subject %d has versions %v, want exactly [1 2]", i, versions)
		}
	}
}
