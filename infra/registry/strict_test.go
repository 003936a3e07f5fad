package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sr"
)

// The tests here hold what the registry refuses, as Confluent's does, and
// how: each answer's status and error code.

// registerBody is the body of a registration of schema of type typ ("" for
// Avro).
func registerBody(schema, typ string) string {
	b, _ := json.Marshal(map[string]string{"schema": schema, "schemaType": typ})
	return string(b)
}

// wantAnswer fails unless an answer has the status, and for an error the
// error code; it returns the message of an error.
func wantAnswer(t *testing.T, what string, status int, body string, wantStatus, wantCode int) string {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("%s: %d %s, want status %d", what, status, body, wantStatus)
	}
	if wantCode == 0 {
		return ""
	}
	var e struct {
		ErrorCode int    `json:"error_code"`
		Message   string `json:"message"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.ErrorCode != wantCode {
		t.Fatalf("%s: %d %s, want error code %d", what, status, body, wantCode)
	}
	return e.Message
}

// TestOnlyAvroIsStored: the registry advertises the one type it checks,
// and refuses the others with 422 wherever a schema is sent, valid or not,
// so nothing unchecked is stored or called compatible.
func TestOnlyAvroIsStored(t *testing.T) {
	cl, url := start(t)
	if status, body := call(t, http.MethodGet, url, "/schemas/types", ""); status != 200 || body != `["AVRO"]` {
		t.Fatalf("GET /schemas/types: %d %s", status, body)
	}
	create(t, cl, subject, sr.Schema{Schema: orderID})
	for _, tc := range []struct{ typ, schema string }{
		{"JSON", jsonStrict},
		{"JSON", jsonBadKey},
		{"PROTOBUF", protoText},
		{"PROTOBUF", "garbage"},
		{"XML", "<order/>"},
	} {
		for _, path := range []string{
			"/subjects/" + subject + "/versions",
			"/subjects/other-value/versions",
			"/subjects/" + subject,
			"/compatibility/subjects/" + subject + "/versions/latest",
			"/compatibility/subjects/" + subject + "/versions",
		} {
			status, body := call(t, http.MethodPost, url, path, registerBody(tc.schema, tc.typ))
			wantAnswer(t, fmt.Sprintf("%s %.20q to %s", tc.typ, tc.schema, path), status, body, 422, 42201)
		}
	}
	if subjects, err := cl.Subjects(context.Background()); err != nil || !slices.Equal(subjects, []string{subject}) {
		t.Fatalf("subjects %v, %v; want only %s", subjects, err, subject)
	}
}

// seedTopic writes records to the state topic as another registry
// (Confluent's) would have, before a registry of this project opens it.
func seedTopic(t *testing.T, c *kfake.Cluster, kvs [][2]string) {
	t.Helper()
	ctx := context.Background()
	compact := "compact"
	if _, err := admin(t, c).CreateTopic(ctx, 1, 3, map[string]*string{"cleanup.policy": &compact}, DefaultTopic); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(DefaultTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, kv := range kvs {
		rec := &kgo.Record{Key: []byte(kv[0])}
		if kv[1] != "" {
			rec.Value = []byte(kv[1])
		}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSubjectKeepsItsType: on a subject whose latest version is a JSON
// Schema (written by another registry), an Avro schema is incompatible
// under every level but NONE.
func TestSubjectKeepsItsType(t *testing.T) {
	c := newCluster(t, 3)
	seedTopic(t, c, [][2]string{
		{`{"keytype":"SCHEMA","subject":"legacy-value","version":1,"magic":1}`,
			`{"subject":"legacy-value","version":1,"id":1,"schemaType":"JSON","schema":` + mustQuote(jsonStrict) + `,"deleted":false}`},
	})
	cl, url := serve(t, open(t, c, Config{}))
	ctx := context.Background()
	if got, err := cl.SchemaByVersion(ctx, "legacy-value", 1); err != nil || got.Type != sr.TypeJSON {
		t.Fatalf("the JSON version is served: %+v, %v", got, err)
	}
	for _, level := range []sr.CompatibilityLevel{sr.CompatBackward, sr.CompatForward, sr.CompatFullTransitive} {
		setLevel(t, cl, level, "legacy-value")
		_, err := cl.CreateSchema(ctx, "legacy-value", sr.Schema{Schema: orderID})
		wantResponseError(t, err, 409, 409)
		status, body := call(t, http.MethodPost, url, "/compatibility/subjects/legacy-value/versions/latest?verbose=true", registerBody(orderID, ""))
		if status != 200 || !strings.Contains(body, `"is_compatible":false`) || !strings.Contains(body, "a subject keeps its type") {
			t.Fatalf("%v: compatibility of Avro with the JSON version: %d %s", level, status, body)
		}
	}
	setLevel(t, cl, sr.CompatNone, "legacy-value")
	if got := create(t, cl, "legacy-value", sr.Schema{Schema: orderID}); got.Version != 2 {
		t.Fatalf("under NONE: version %d, want 2", got.Version)
	}
}

// longDefault is a record with a long field whose default is n, a number
// a float64 cannot hold exactly.
func longDefault(n string) string {
	return `{"type":"record","name":"Counter","namespace":"shop.test","fields":[{"name":"n","type":"long","default":` + n + `}]}`
}

// TestIdentityIsExact: schemas that differ only in a long default are two
// schemas, with two IDs and each its own text; the same schema spaced
// otherwise is the same one.
func TestIdentityIsExact(t *testing.T) {
	cl, url := start(t)
	ctx := context.Background()
	setLevel(t, cl, sr.CompatNone, subject)
	first := create(t, cl, subject, sr.Schema{Schema: longDefault("9007199254740992")})
	second := create(t, cl, subject, sr.Schema{Schema: longDefault("9007199254740993")})
	if second.ID == first.ID || second.Version != 2 {
		t.Fatalf("...993 got ID %d version %d, ...992 ID %d: want a new ID and version 2", second.ID, second.Version, first.ID)
	}
	status, body := call(t, http.MethodGet, url, fmt.Sprintf("/schemas/ids/%d/schema", second.ID), "")
	if status != 200 || body != longDefault("9007199254740993") {
		t.Fatalf("the text of ID %d: %d %s", second.ID, status, body)
	}
	got, err := cl.LookupSchema(ctx, subject, sr.Schema{Schema: longDefault("9007199254740993")})
	if err != nil || got.Version != 2 {
		t.Fatalf("lookup of ...993: %+v, %v; want version 2", got, err)
	}
	// The control: the same schema, spaced and ordered otherwise, is the
	// same schema, with the same ID and no new version.
	spaced := `{ "namespace": "shop.test", "name": "Counter", "type": "record",
		"fields": [ { "default": 9007199254740992, "type": {"type": "long"}, "name": "n" } ] }`
	if again := create(t, cl, subject, sr.Schema{Schema: spaced}); again.ID != first.ID || again.Version != 1 {
		t.Fatalf("...992 spaced: ID %d version %d, want ID %d version 1", again.ID, again.Version, first.ID)
	}
}

// TestCanonicalAvro: what makes two Avro texts the same schema.
func TestCanonicalAvro(t *testing.T) {
	cases := []struct {
		name string
		a, b string
		same bool
	}{
		{"whitespace and key order", orderID, `{"fields":[{"type":"string","name":"id"}],"namespace":"shop.test","name":"Order","type":"record"}`, true},
		{"a primitive written as an object", `{"type":"record","name":"R","fields":[{"name":"f","type":"int"}]}`,
			`{"type":"record","name":"R","fields":[{"name":"f","type":{"type":"int"}}]}`, true},
		{"namespace or full name", orderID, `{"type":"record","name":"shop.test.Order","fields":[{"name":"id","type":"string"}]}`, true},
		{"a reference by short or full name", `{"type":"record","name":"A","namespace":"n","fields":[{"name":"b","type":{"type":"fixed","name":"B","size":2}},{"name":"c","type":"B"}]}`,
			`{"type":"record","name":"A","namespace":"n","fields":[{"name":"b","type":{"type":"fixed","name":"B","size":2}},{"name":"c","type":"n.B"}]}`, true},
		{"an escaped character", `{"type":"record","name":"R","doc":"caf\u00e9","fields":[]}`, `{"type":"record","name":"R","doc":"café","fields":[]}`, true},
		{"long defaults a float64 confuses", longDefault("9007199254740992"), longDefault("9007199254740993"), false},
		{"1 and 1.0", `{"type":"record","name":"R","fields":[{"name":"f","type":"double","default":1}]}`,
			`{"type":"record","name":"R","fields":[{"name":"f","type":"double","default":1.0}]}`, false},
		{"a logical type", `{"type":"record","name":"R","fields":[{"name":"f","type":"long"}]}`,
			`{"type":"record","name":"R","fields":[{"name":"f","type":{"type":"long","logicalType":"timestamp-millis"}}]}`, false},
		{"a doc", orderID, `{"type":"record","name":"Order","namespace":"shop.test","doc":"an order","fields":[{"name":"id","type":"string"}]}`, false},
		{"another namespace", orderID, `{"type":"record","name":"Order","namespace":"shop.other","fields":[{"name":"id","type":"string"}]}`, false},
		{"a union's order", `{"type":"record","name":"R","fields":[{"name":"f","type":["null","string"]}]}`,
			`{"type":"record","name":"R","fields":[{"name":"f","type":["string","null"]}]}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := canonicalAvro(tc.a)
			if err != nil {
				t.Fatal(err)
			}
			b, err := canonicalAvro(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if (a == b) != tc.same {
				t.Fatalf("same %v, want %v:\n  %s\n  %s", a == b, tc.same, a, b)
			}
		})
	}
}

// TestSubjectNames: a name with a control character, one too long, and one
// qualified with another context are refused with 422 (error code 42208)
// naming the rule, on writes and reads alike; the longest name allowed is
// taken.
func TestSubjectNames(t *testing.T) {
	_, base := start(t)
	body := registerBody(orderID, "")
	cases := []struct {
		name, subject, rule string
	}{
		{"NUL", "orders\x00-value", "control character U+0000"},
		{"CR", "orders\r-value", "control character U+000D"},
		{"LF", "orders\n-value", "control character U+000A"},
		{"DEL", "orders\x7f-value", "control character U+007F"},
		{"256 characters", strings.Repeat("s", 256), "256 characters long; at most 255 are allowed"},
		{"another context", ":.other:orders-value", "a subject qualified with a context"},
		{"not UTF-8", "orders\xff-value", "not UTF-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []struct{ method, path string }{
				{http.MethodPost, "/subjects/%s/versions"},
				{http.MethodGet, "/subjects/%s/versions"},
				{http.MethodPut, "/config/%s"},
				{http.MethodPut, "/mode/%s"},
			} {
				path := fmt.Sprintf(c.path, url.PathEscape(tc.subject))
				status, answer := call(t, c.method, base, path, body)
				msg := wantAnswer(t, c.method+" "+path, status, answer, 422, 42208)
				if !strings.Contains(msg, tc.rule) {
					t.Fatalf("%s %s: message %q does not name the rule %q", c.method, path, msg, tc.rule)
				}
			}
		})
	}
	// The controls: the longest name allowed, and names with any other
	// printable character, are taken.
	for _, s := range []string{strings.Repeat("s", 255), "Bestellungen-wert", "orders:v1-value", "ordres-café"} {
		status, answer := call(t, http.MethodPost, base, "/subjects/"+url.PathEscape(s)+"/versions", body)
		wantAnswer(t, "register under "+s, status, answer, 200, 0)
	}
}

// TestContexts: the /contexts/ prefix names the default context "." or is
// refused; a write meant for another context never lands in the default
// one.
func TestContexts(t *testing.T) {
	_, base := start(t)
	body := registerBody(orderID, "")
	for _, path := range []string{
		"/contexts/.shop/subjects/" + subject + "/versions",
		"/contexts/.shop/subjects",
		"/contexts/.shop/schemas/ids/1",
		"/contexts/.shop/config",
	} {
		method := http.MethodGet
		if strings.HasSuffix(path, "/versions") {
			method = http.MethodPost
		}
		status, answer := call(t, method, base, path, body)
		wantAnswer(t, method+" "+path, status, answer, 422, 42208)
	}
	if status, answer := call(t, http.MethodGet, base, "/subjects", ""); status != 200 || answer != `[]` {
		t.Fatalf("after writes to another context, the default one holds %d %s", status, answer)
	}
	// The control: the default context's own prefix is served.
	status, answer := call(t, http.MethodPost, base, "/contexts/./subjects/"+subject+"/versions", body)
	wantAnswer(t, "register under /contexts/./", status, answer, 200, 0)
	if status, answer := call(t, http.MethodGet, base, "/subjects", ""); status != 200 || answer != `["orders-value"]` {
		t.Fatalf("subjects: %d %s", status, answer)
	}
	if status, answer := call(t, http.MethodGet, base, "/contexts", ""); status != 200 || answer != `["."]` {
		t.Fatalf("contexts: %d %s", status, answer)
	}
}

// bigSchema is a valid Avro record of about size bytes, most of them its
// doc.
func bigSchema(size int) string {
	return `{"type":"record","name":"Big","namespace":"shop.test","doc":"` + strings.Repeat("a", size) +
		`","fields":[{"name":"id","type":"string"}]}`
}

// countRequests counts the requests of a kind the cluster gets, and lets
// the cluster answer them.
func countRequests(c *kfake.Cluster, key kmsg.Key) *atomic.Int32 {
	var n atomic.Int32
	c.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		n.Add(1)
		return nil, nil, false
	})
	return &n
}

// TestTooLarge: a schema whose record the state topic would refuse is
// refused with 422 (error code 42209) before anything is written, by the
// topic's own max.message.bytes.
func TestTooLarge(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 3)
	compact, max := "compact", "65536"
	if _, err := admin(t, c).CreateTopic(ctx, 1, 3, map[string]*string{"cleanup.policy": &compact, "max.message.bytes": &max}, DefaultTopic); err != nil {
		t.Fatal(err)
	}
	_, base := serve(t, open(t, c, Config{}))
	produces := countRequests(c, kmsg.Produce)
	status, answer := call(t, http.MethodPost, base, "/subjects/"+subject+"/versions", registerBody(bigSchema(100_000), ""))
	msg := wantAnswer(t, "a 100 kB schema", status, answer, 422, 42209)
	if !strings.Contains(msg, "at most 65536") {
		t.Fatalf("message %q does not say the topic's limit", msg)
	}
	if n := produces.Load(); n != 0 {
		t.Fatalf("%d produce requests for a schema too large", n)
	}
	// The control: a schema within the limit is written.
	status, answer = call(t, http.MethodPost, base, "/subjects/"+subject+"/versions", registerBody(bigSchema(30_000), ""))
	wantAnswer(t, "a 30 kB schema", status, answer, 200, 0)
	if produces.Load() == 0 {
		t.Fatal("the control wrote without a produce request: the counter counts nothing")
	}
	// A body over the registry's own bound is refused the same way.
	status, answer = call(t, http.MethodPost, base, "/subjects/"+subject+"/versions", registerBody(bigSchema(maxBody), ""))
	wantAnswer(t, "a body over 1 MiB", status, answer, 422, 42209)
}

// refuseProduce makes the cluster refuse produce requests with err: every
// one, or only the first.
func refuseProduce(c *kfake.Cluster, err *kerr.Error, once bool) {
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !once {
			c.KeepControl()
		}
		pr := req.(*kmsg.ProduceRequest)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, t := range pr.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			for _, p := range t.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, err.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
}

// TestKafkaRefusals: a refusal that writing again cannot change is
// answered at once, without taking the writer role again; a 500 says what
// failed and not Kafka's words. The control: a fenced write is taken up
// again, and succeeds.
func TestKafkaRefusals(t *testing.T) {
	cases := []struct {
		name   string
		err    *kerr.Error
		once   bool
		status int
		code   int
		inits  int32 // InitProducerID requests: 1 is no retry
	}{
		{name: "MESSAGE_TOO_LARGE", err: kerr.MessageTooLarge, status: 422, code: 42209, inits: 1},
		{name: "TOPIC_AUTHORIZATION_FAILED", err: kerr.TopicAuthorizationFailed, status: 500, code: 50001, inits: 1},
		{name: "control: fenced once", err: kerr.InvalidProducerEpoch, once: true, status: 200, inits: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 3)
			_, base := serve(t, open(t, c, Config{}))
			inits := countRequests(c, kmsg.InitProducerID)
			refuseProduce(c, tc.err, tc.once)
			status, answer := call(t, http.MethodPost, base, "/subjects/"+subject+"/versions", registerBody(orderID, ""))
			msg := wantAnswer(t, "register", status, answer, tc.status, tc.code)
			if n := inits.Load(); n != tc.inits {
				t.Fatalf("%d InitProducerID requests, want %d", n, tc.inits)
			}
			if tc.status == 500 && (strings.Contains(msg, tc.err.Message) || strings.Contains(msg, "AUTHORIZATION") ||
				!strings.Contains(msg, "could not write to the schema topic")) {
				t.Fatalf("500 message %q: want what failed, without Kafka's words", msg)
			}
		})
	}
}

// TestCompiledOnce: a stored schema is parsed once, when the registry
// first reads it; a request parses only the schema it brings, however many
// versions the subject has.
func TestCompiledOnce(t *testing.T) {
	cl, base := start(t)
	ctx := context.Background()
	setLevel(t, cl, sr.CompatNone, subject)
	const versions = 20
	schemaN := func(n int) string {
		fields := make([]string, n)
		for i := range fields {
			fields[i] = fmt.Sprintf(`{"name":"f%d","type":"string","default":""}`, i)
		}
		return `{"type":"record","name":"R","fields":[` + strings.Join(fields, ",") + `]}`
	}
	for n := 1; n <= versions; n++ {
		create(t, cl, subject, sr.Schema{Schema: schemaN(n)})
	}
	setLevel(t, cl, sr.CompatFullTransitive, subject)
	steps := []struct {
		name     string
		do       func()
		compiles int64
	}{
		{"lookup of version 1", func() {
			if _, err := cl.LookupSchema(ctx, subject, sr.Schema{Schema: schemaN(1)}); err != nil {
				t.Fatal(err)
			}
		}, 1},
		{"a schema by ID", func() {
			if _, err := cl.SchemaByID(ctx, 3); err != nil {
				t.Fatal(err)
			}
		}, 0},
		{"registering version 1 again", func() { create(t, cl, subject, sr.Schema{Schema: schemaN(1)}) }, 1},
		{"a transitive check against 20 versions", func() {
			status, answer := call(t, http.MethodPost, base, "/compatibility/subjects/"+subject+"/versions", registerBody(schemaN(versions+1), ""))
			if status != 200 || answer != `{"is_compatible":true}` {
				t.Fatalf("%d %s", status, answer)
			}
		}, 1},
		{"a new version, checked against 20", func() { create(t, cl, subject, sr.Schema{Schema: schemaN(versions + 1)}) }, 2},
	}
	for _, st := range steps {
		before := compiles.Load()
		st.do()
		if got := compiles.Load() - before; got != st.compiles {
			t.Fatalf("%s compiled %d schemas, want %d", st.name, got, st.compiles)
		}
	}
}

// TestPaging: GET /subjects and GET /schemas take offset and limit.
func TestPaging(t *testing.T) {
	cl, base := start(t)
	for _, s := range []string{"a-value", "b-value", "c-value", "d-value"} {
		create(t, cl, s, sr.Schema{Schema: orderID})
	}
	cases := []struct {
		path, want string
		status     int
	}{
		{"/subjects?offset=1&limit=2", `["b-value","c-value"]`, 200},
		{"/subjects?offset=3", `["d-value"]`, 200},
		{"/subjects?offset=9", `[]`, 200},
		{"/subjects?limit=0", `[]`, 200},
		{"/subjects?limit=-1", `["a-value","b-value","c-value","d-value"]`, 200},
		{"/subjects?offset=-1", `{"error_code":400,"message":"offset=\"-1\": want a whole number from 0"}`, 400},
		{"/subjects?limit=many", `{"error_code":400,"message":"limit=\"many\": want a whole number from 0, or -1 for every item"}`, 400},
		{"/schemas?offset=2&limit=1", `[{"subject":"c-value","version":1,"id":1,"schema":` + mustQuote(orderID) + `}]`, 200},
		{"/schemas?offset=4", `[]`, 200},
		{"/schemas?limit=x", "", 400},
	}
	for _, tc := range cases {
		status, answer := call(t, http.MethodGet, base, tc.path, "")
		if status != tc.status || (tc.want != "" && answer != tc.want) {
			t.Errorf("GET %s: %d %s, want %d %s", tc.path, status, answer, tc.status, tc.want)
		}
	}
}

// TestMode: GET, PUT and DELETE of /mode and /mode/{subject}; READONLY
// refuses registrations and deletes with 422 (error code 42205), and a
// subject's own mode wins over the global one.
func TestMode(t *testing.T) {
	_, base := start(t)
	register := registerBody(orderID, "")
	steps := []struct {
		method, path, body string
		status             int
		answer             string // the whole body, or for an error its error code
	}{
		{"GET", "/mode", "", 200, `{"mode":"READWRITE"}`},
		{"GET", "/mode/" + subject, "", 404, "40409"},
		{"GET", "/mode/" + subject + "?defaultToGlobal=true", "", 200, `{"mode":"READWRITE"}`},
		{"POST", "/subjects/" + subject + "/versions", register, 200, `{"id":1}`},
		{"PUT", "/mode", `{"mode":"readonly"}`, 200, `{"mode":"READONLY"}`},
		{"GET", "/mode", "", 200, `{"mode":"READONLY"}`},
		{"POST", "/subjects/" + subject + "/versions", register, 422, "42205"},
		{"POST", "/subjects/other-value/versions", register, 422, "42205"},
		{"DELETE", "/subjects/" + subject + "/versions/1", "", 422, "42205"},
		{"DELETE", "/subjects/" + subject, "", 422, "42205"},
		{"POST", "/subjects/" + subject, register, 200, ""},     // reads go on
		{"PUT", "/config", `{"compatibility":"FULL"}`, 200, ""}, // so do levels
		{"GET", "/mode/" + subject + "?defaultToGlobal=true", "", 200, `{"mode":"READONLY"}`},
		{"PUT", "/mode/other-value", `{"mode":"READWRITE"}`, 200, `{"mode":"READWRITE"}`},
		{"GET", "/mode/other-value", "", 200, `{"mode":"READWRITE"}`},
		{"POST", "/subjects/other-value/versions", register, 200, `{"id":1}`},
		{"DELETE", "/mode/other-value", "", 200, `{"mode":"READWRITE"}`},
		{"DELETE", "/mode/other-value", "", 404, "40401"},
		{"DELETE", "/subjects/other-value", "", 422, "42205"},
		{"PUT", "/mode", `{"mode":"IMPORT"}`, 422, "42204"},
		{"PUT", "/mode", `{"mode":"READ_MOSTLY"}`, 422, "42204"},
		{"PUT", "/mode/" + subject, `{"mode":""}`, 422, "42204"},
		{"DELETE", "/mode", "", 200, `{"mode":"READONLY"}`},
		{"GET", "/mode", "", 200, `{"mode":"READWRITE"}`},
		{"DELETE", "/subjects/other-value", "", 200, `[1]`},
	}
	for i, st := range steps {
		status, answer := call(t, st.method, base, st.path, st.body)
		if status != st.status {
			t.Fatalf("step %d, %s %s: %d %s, want %d", i, st.method, st.path, status, answer, st.status)
		}
		if st.status != 200 {
			wantAnswer(t, st.method+" "+st.path, status, answer, st.status, atoi(t, st.answer))
		} else if st.answer != "" && answer != st.answer {
			t.Fatalf("step %d, %s %s: %s, want %s", i, st.method, st.path, answer, st.answer)
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("error code %q: %v", s, err)
	}
	return n
}

// TestReadEndpoints: the read endpoints no other test goes through, and
// the ones this registry does not have, which answer 404 in Confluent's
// error shape.
func TestReadEndpoints(t *testing.T) {
	cl, base := start(t)
	create(t, cl, "a-value", sr.Schema{Schema: orderID})
	create(t, cl, "b-value", sr.Schema{Schema: orderIDSpaced}) // the same schema: ID 1
	create(t, cl, "money-value", sr.Schema{Schema: money})
	create(t, cl, subject, sr.Schema{Schema: payment, References: moneyRef})
	cases := []struct {
		path, want string
		status     int
	}{
		{"/", `{}`, 200},
		{"/schemas/ids/1/subjects", `["a-value","b-value"]`, 200},
		{"/schemas/ids/1/versions", `[{"subject":"a-value","version":1},{"subject":"b-value","version":1}]`, 200},
		{"/subjects/b-value/versions/1/schema", orderIDSpaced, 200},
		{"/subjects/money-value/versions/latest/referencedby", `[3]`, 200},
		{"/subjects/a-value/versions/1/referencedby", `[]`, 200},
		{"/schemas/ids/99", `{"error_code":40403,"message":"Schema 99 not found"}`, 404},
		{"/schemas/guids/8b0e4c4e-7f1a-4d52-9d8e-2b1f0c3a5e61", `{"error_code":404,"message":"HTTP 404 Not Found"}`, 404},
		{"/exporters", `{"error_code":404,"message":"HTTP 404 Not Found"}`, 404},
		{"/v1/metadata/id", `{"error_code":404,"message":"HTTP 404 Not Found"}`, 404},
	}
	for _, tc := range cases {
		status, answer := call(t, http.MethodGet, base, tc.path, "")
		if status != tc.status || answer != tc.want {
			t.Errorf("GET %s: %d %s, want %d %s", tc.path, status, answer, tc.status, tc.want)
		}
	}
}
