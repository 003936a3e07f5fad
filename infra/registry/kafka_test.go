package registry

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sr"
)

// call sends one request to the registry at url and returns the status and
// the body.
func call(t *testing.T, method, url, path, body string, auth ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if len(auth) == 2 {
		req.SetBasicAuth(auth[0], auth[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// snapshot is everything the registry at url answers about its subjects,
// versions, levels and IDs, soft-deleted ones included: path to status and
// body.
func snapshot(t *testing.T, url string) map[string]string {
	t.Helper()
	out := map[string]string{}
	get := func(path string, into any) {
		t.Helper()
		status, body := call(t, http.MethodGet, url, path, "")
		out[path] = fmt.Sprintf("%d %s", status, body)
		if into != nil && status == http.StatusOK {
			if err := json.Unmarshal([]byte(body), into); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
	}
	get("/subjects", nil)
	get("/config", nil)
	get("/mode", nil)
	var subjects []string
	get("/subjects?deleted=true", &subjects)
	for _, s := range subjects {
		get("/config/"+s, nil)
		get("/mode/"+s, nil)
		get("/subjects/"+s+"/versions", nil)
		var versions []int
		get("/subjects/"+s+"/versions?deleted=true", &versions)
		for _, v := range versions {
			var ss subjectSchema
			get(fmt.Sprintf("/subjects/%s/versions/%d?deleted=true", s, v), &ss)
			get(fmt.Sprintf("/schemas/ids/%d", ss.ID), nil)
			get(fmt.Sprintf("/schemas/ids/%d/versions?deleted=true", ss.ID), nil)
		}
	}
	return out
}

// sameAnswers fails unless two snapshots are equal, naming what differs.
func sameAnswers(t *testing.T, a, b map[string]string) {
	t.Helper()
	for _, path := range slices.Sorted(maps.Keys(a)) {
		if a[path] != b[path] {
			t.Errorf("%s:\n  %s\n  %s", path, a[path], b[path])
		}
	}
	for path := range b {
		if _, ok := a[path]; !ok {
			t.Errorf("%s: only in the second: %s", path, b[path])
		}
	}
}

func create(t *testing.T, cl *sr.Client, subject string, s sr.Schema) sr.SubjectSchema {
	t.Helper()
	ss, err := cl.CreateSchema(context.Background(), subject, s)
	if err != nil {
		t.Fatalf("register under %s: %v", subject, err)
	}
	return ss
}

// TestRestart stops a registry and starts another on the same cluster: it
// serves the same IDs, versions, levels and deletions, and a record written
// with version 2 before the restart still decodes.
func TestRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		compact bool // compact the topic between the two
	}{
		{name: "restart"},
		{name: "restart after compaction", compact: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := newCluster(t, 3)
			first := open(t, c, Config{})
			cl, url := serve(t, first)

			create(t, cl, subject, sr.Schema{Schema: orderID})
			v2 := create(t, cl, subject, sr.Schema{Schema: orderEmailDef})
			setLevel(t, cl, sr.CompatFull, subject)
			setLevel(t, cl, sr.CompatForward)
			if status, body := call(t, http.MethodPut, url, "/mode/frozen-value", `{"mode":"READONLY"}`); status != 200 {
				t.Fatalf("PUT /mode/frozen-value: %d %s", status, body)
			}
			create(t, cl, "gone-value", sr.Schema{Schema: money})
			if _, err := cl.DeleteSubject(ctx, "gone-value", sr.SoftDelete); err != nil {
				t.Fatal(err)
			}
			purged := create(t, cl, "purged-value", sr.Schema{Schema: purged})
			for _, how := range []sr.DeleteHow{sr.SoftDelete, sr.HardDelete} {
				if _, err := cl.DeleteSubject(ctx, "purged-value", how); err != nil {
					t.Fatal(err)
				}
			}
			record := encodeWithID(t, v2.ID, orderEmailDef, map[string]any{"id": "o-1", "email": "a@example.com"})
			before := snapshot(t, url)

			first.Close()
			if tc.compact {
				c.Compact()
			}
			second := open(t, c, Config{})
			cl, url = serve(t, second)
			sameAnswers(t, before, snapshot(t, url))

			if got := decodeWithRegistry(t, cl, record); got["email"] != "a@example.com" {
				t.Fatalf("record written with version 2 decodes as %v", got)
			}
			if got, err := cl.SchemaByVersion(ctx, subject, 2); err != nil || got.ID != v2.ID {
				t.Fatalf("version 2 after restart: %+v, %v; want ID %d", got, err, v2.ID)
			}
			if res := cl.Compatibility(ctx, subject); res[0].Err != nil || res[0].Level != sr.CompatFull {
				t.Fatalf("level of %s: %+v", subject, res[0])
			}
			if res := cl.Compatibility(ctx); res[0].Err != nil || res[0].Level != sr.CompatForward {
				t.Fatalf("global level: %+v", res[0])
			}
			if status, body := call(t, http.MethodGet, url, "/mode/frozen-value", ""); status != 200 || body != `{"mode":"READONLY"}` {
				t.Fatalf("mode of frozen-value after restart: %d %s", status, body)
			}
			if subjects, err := cl.Subjects(ctx); err != nil || !slices.Equal(subjects, []string{subject}) {
				t.Fatalf("subjects %v, %v", subjects, err)
			}
			if _, err := cl.SchemaByVersion(sr.WithParams(ctx, sr.ShowDeleted), "gone-value", 1); err != nil {
				t.Fatalf("soft-deleted version after restart: %v", err)
			}
			// The ID of the permanently deleted schema is not given again.
			if got := create(t, cl, "new-value", sr.Schema{Schema: orderNote}); got.ID != purged.ID+1 {
				t.Fatalf("new schema got ID %d, want %d", got.ID, purged.ID+1)
			}
		})
	}
}

// encodeWithID encodes v with schema in the Confluent wire format under id.
func encodeWithID(t *testing.T, id int, schema string, v any) []byte {
	t.Helper()
	body, err := avro.Marshal(avro.MustParse(schema), v)
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(id)), body...)
}

// decodeWithRegistry decodes a Confluent wire-format record with the schema
// the registry gives for its ID, as kafka-avro-console-consumer does.
func decodeWithRegistry(t *testing.T, cl *sr.Client, b []byte) map[string]any {
	t.Helper()
	s, err := cl.SchemaByID(context.Background(), int(binary.BigEndian.Uint32(b[1:5])))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := avro.ParseWithCache(s.Schema, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := avro.Unmarshal(parsed, b[5:], &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTwoInstances registers different schemas through two instances at
// once: no ID goes to two schemas, and once caught up both answer alike.
// The controls take away one half of the design each and must collide.
func TestTwoInstances(t *testing.T) {
	cases := []struct {
		name    string
		a, b    Config
		lag     time.Duration // how long the brokers hold every fetch: followers that lag
		collide bool
		rounds  int // rounds of 2×20 concurrent registrations; controls stop at the first collision
	}{
		{name: "one writer ID, caught up", rounds: 5},
		{name: "one writer ID, caught up, lagging followers", lag: 20 * time.Millisecond, rounds: 1},
		{name: "control: a writer ID each, so nobody is fenced",
			a: Config{WriterID: "writer-a"}, b: Config{WriterID: "writer-b"}, collide: true, rounds: 20},
		{name: "control: fenced, but deciding without catching up, lagging followers",
			a: Config{skipCatchUp: true}, b: Config{skipCatchUp: true}, lag: 20 * time.Millisecond, collide: true, rounds: 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := newCluster(t, 3)
			ra, rb := open(t, c, tc.a), open(t, c, tc.b)
			if tc.lag > 0 {
				c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
					c.KeepControl()
					c.SleepControl(func() { time.Sleep(tc.lag) })
					return nil, nil, false
				})
			}
			cla, urla := serve(t, ra)
			clb, urlb := serve(t, rb)
			setLevel(t, cla, sr.CompatNone) // any schema may follow any other

			var (
				mu      sync.Mutex
				texts   = map[int]map[string]bool{} // ID → the schemas it was given to
				assign  = map[string]int{}          // schema → its ID
				collide []int
			)
			for round := range tc.rounds {
				var wg sync.WaitGroup
				start := make(chan struct{})
				for inst, cl := range []*sr.Client{cla, clb} {
					for i := range 20 {
						wg.Go(func() {
							<-start
							schema := fmt.Sprintf(`{"type":"record","name":"R%d_%d_%d","fields":[{"name":"f","type":"string"}]}`, round, inst, i)
							id, err := cl.RegisterSchema(ctx, fmt.Sprintf("shared-%d-value", i%5), sr.Schema{Schema: schema}, -1, -1)
							if err != nil {
								t.Errorf("instance %d: %v", inst, err)
								return
							}
							mu.Lock()
							defer mu.Unlock()
							if texts[id] == nil {
								texts[id] = map[string]bool{}
							}
							texts[id][schema] = true
							assign[schema] = id
							if len(texts[id]) == 2 {
								collide = append(collide, id)
							}
						})
					}
				}
				close(start)
				wg.Wait()
				if t.Failed() || (tc.collide && len(collide) > 0) {
					break
				}
			}
			if tc.collide && len(collide) == 0 {
				t.Fatalf("control: no ID was given twice in %d rounds; the test cannot tell a broken registry", tc.rounds)
			}
			if !tc.collide && len(collide) > 0 {
				t.Fatalf("IDs given to two schemas: %v", collide)
			}

			for _, r := range []*Registry{ra, rb} {
				if err := r.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			sameAnswers(t, snapshot(t, urla), snapshot(t, urlb))
			if tc.collide {
				return
			}
			for schema, id := range assign {
				for _, cl := range []*sr.Client{cla, clb} {
					if got, err := cl.SchemaByID(ctx, id); err != nil || identity(got) != identity(sr.Schema{Schema: schema}) {
						t.Fatalf("ID %d is %q (%v), want %s", id, got.Schema, err, schema)
					}
				}
			}
		})
	}
}

// TestTopic checks the state topic: one partition, compacted, replicated
// like the shop's topics; a second instance finds it there.
func TestTopic(t *testing.T) {
	for _, tc := range []struct {
		brokers  int
		replicas int
		minISR   string
	}{
		{brokers: 3, replicas: 3, minISR: "2"},
		{brokers: 1, replicas: 1},
	} {
		t.Run(fmt.Sprintf("%d brokers", tc.brokers), func(t *testing.T) {
			ctx := context.Background()
			c := newCluster(t, tc.brokers)
			open(t, c, Config{})
			open(t, c, Config{}) // the topic exists already
			adm := admin(t, c)
			topics, err := adm.ListTopics(ctx, DefaultTopic)
			if err != nil {
				t.Fatal(err)
			}
			td := topics[DefaultTopic]
			if td.Err != nil || len(td.Partitions) != 1 || len(td.Partitions[0].Replicas) != tc.replicas {
				t.Fatalf("topic %s: %+v, want 1 partition with %d replicas", DefaultTopic, td, tc.replicas)
			}
			configs, err := adm.DescribeTopicConfigs(ctx, DefaultTopic)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := configs.On(DefaultTopic, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, cfg := range rc.Configs {
				got[cfg.Key] = cfg.MaybeValue()
			}
			if got["cleanup.policy"] != "compact" {
				t.Fatalf("cleanup.policy %q, want compact", got["cleanup.policy"])
			}
			if tc.minISR != "" && got["min.insync.replicas"] != tc.minISR {
				t.Fatalf("min.insync.replicas %q, want %s", got["min.insync.replicas"], tc.minISR)
			}
			if tc.minISR == "" && got["min.insync.replicas"] == "2" {
				t.Fatalf("min.insync.replicas 2 with %d replicas", tc.replicas)
			}
		})
	}
}

func admin(t *testing.T, c *kfake.Cluster) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// readTopic reads the committed records of the state topic, at least n,
// polling until a deadline.
func readTopic(t *testing.T, c *kfake.Cluster, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{DefaultTopic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n && ctx.Err() == nil {
		recs = append(recs, cl.PollFetches(ctx).Records()...)
	}
	if len(recs) < n {
		t.Fatalf("read %d records of %s, want %d", len(recs), DefaultTopic, n)
	}
	return recs
}

// TestRecordFormat reads the state topic itself: the records are
// Confluent's, byte for byte.
func TestRecordFormat(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 3)
	cl, url := serve(t, open(t, c, Config{}))

	create(t, cl, subject, sr.Schema{Schema: orderID})
	setLevel(t, cl, sr.CompatFull, subject)
	setLevel(t, cl, sr.CompatForward)
	create(t, cl, "purged-value", sr.Schema{Schema: purged})
	create(t, cl, "money-value", sr.Schema{Schema: money})
	create(t, cl, "payments-value", sr.Schema{Schema: payment, References: moneyRef})
	for _, how := range []sr.DeleteHow{sr.SoftDelete, sr.HardDelete} {
		if err := cl.DeleteSchema(ctx, "purged-value", 1, how); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range [][3]string{
		{http.MethodDelete, "/config/" + subject, `{"compatibilityLevel":"FULL"}`},
		{http.MethodPut, "/mode/" + subject, `{"mode":"READONLY"}`},
		{http.MethodPut, "/mode", `{"mode":"READONLY"}`},
		{http.MethodDelete, "/mode/" + subject, `{"mode":"READONLY"}`},
	} {
		if status, body := call(t, c[0], url, c[1], c[2]); status != 200 || body != c[2] {
			t.Fatalf("%s %s: %d %s, want %s", c[0], c[1], status, body, c[2])
		}
	}

	quote := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	want := [][2]string{
		{`{"keytype":"SCHEMA","subject":"orders-value","version":1,"magic":1}`,
			`{"subject":"orders-value","version":1,"id":1,"schema":` + quote(orderID) + `,"deleted":false}`},
		{`{"keytype":"CONFIG","subject":"orders-value","magic":0}`, `{"compatibilityLevel":"FULL"}`},
		{`{"keytype":"CONFIG","subject":null,"magic":0}`, `{"compatibilityLevel":"FORWARD"}`},
		{`{"keytype":"SCHEMA","subject":"purged-value","version":1,"magic":1}`,
			`{"subject":"purged-value","version":1,"id":2,"schema":` + quote(purged) + `,"deleted":false}`},
		{`{"keytype":"SCHEMA","subject":"money-value","version":1,"magic":1}`,
			`{"subject":"money-value","version":1,"id":3,"schema":` + quote(money) + `,"deleted":false}`},
		{`{"keytype":"SCHEMA","subject":"payments-value","version":1,"magic":1}`,
			`{"subject":"payments-value","version":1,"id":4,"references":[{"name":"shop.test.Money","subject":"money-value","version":1}],"schema":` + quote(payment) + `,"deleted":false}`},
		{`{"keytype":"SCHEMA","subject":"purged-value","version":1,"magic":1}`,
			`{"subject":"purged-value","version":1,"id":2,"schema":` + quote(purged) + `,"deleted":true}`},
		{`{"keytype":"SCHEMA","subject":"purged-value","version":1,"magic":1}`, "null"},
		{`{"keytype":"MAX_ID","magic":0}`, `{"maxId":4}`},
		{`{"keytype":"CONFIG","subject":"orders-value","magic":0}`, "null"},
		{`{"keytype":"MODE","subject":"orders-value","magic":0}`, `{"mode":"READONLY"}`},
		{`{"keytype":"MODE","subject":null,"magic":0}`, `{"mode":"READONLY"}`},
		{`{"keytype":"MODE","subject":"orders-value","magic":0}`, "null"},
	}
	recs := readTopic(t, c, len(want))
	for i, rec := range recs {
		value := "null"
		if rec.Value != nil {
			value = string(rec.Value)
		}
		if i >= len(want) || string(rec.Key) != want[i][0] || value != want[i][1] {
			t.Errorf("record %d:\n  key   %s\n  value %s", i, rec.Key, value)
			if i < len(want) {
				t.Errorf("want:\n  key   %s\n  value %s", want[i][0], want[i][1])
			}
		}
	}
}

// TestReadsConfluentRecords starts a registry on a _schemas topic written
// as Confluent's registry writes it, with record types this one skips and
// one record nobody can read.
func TestReadsConfluentRecords(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 3)
	compact := "compact"
	if _, err := admin(t, c).CreateTopic(ctx, 1, 3, map[string]*string{"cleanup.policy": &compact}, DefaultTopic); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(DefaultTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, kv := range [][2]string{
		{`{"keytype":"NOOP","magic":0}`, ""},
		{`{"keytype":"SCHEMA","subject":"legacy-value","version":1,"magic":1}`,
			`{"subject":"legacy-value","version":1,"id":21,"schema":"\"string\"","deleted":false}`},
		{`{"magic":1,"keytype":"SCHEMA","subject":"legacy-value","version":2}`,
			`{"subject":"legacy-value","version":2,"id":22,"schemaType":"AVRO","schema":` + mustQuote(orderID) + `,"deleted":false}`},
		{`{"keytype":"CONFIG","subject":"legacy-value","magic":0}`, `{"compatibilityLevel":"NONE"}`},
		{`{"keytype":"MODE","subject":null,"magic":0}`, `{"mode":"READWRITE"}`},
		{`not json`, `{}`},
		{`{"keytype":"SCHEMA","subject":"legacy-value","version":1,"magic":1}`,
			`{"subject":"legacy-value","version":1,"id":21,"schema":"\"string\"","deleted":true}`},
	} {
		rec := &kgo.Record{Key: []byte(kv[0])}
		if kv[1] != "" {
			rec.Value = []byte(kv[1])
		}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	reg, _ := serve(t, open(t, c, Config{}))
	if versions, err := reg.SubjectVersions(ctx, "legacy-value"); err != nil || !slices.Equal(versions, []int{2}) {
		t.Fatalf("live versions %v, %v; want [2]", versions, err)
	}
	if ss, err := reg.SchemaByVersion(sr.WithParams(ctx, sr.ShowDeleted), "legacy-value", 1); err != nil || ss.ID != 21 || ss.Schema.Schema != `"string"` {
		t.Fatalf("soft-deleted version 1: %+v, %v", ss, err)
	}
	if res := reg.Compatibility(ctx, "legacy-value"); res[0].Err != nil || res[0].Level != sr.CompatNone {
		t.Fatalf("level %+v", res[0])
	}
	if got := create(t, reg, "new-value", sr.Schema{Schema: money}); got.ID != 23 {
		t.Fatalf("new schema got ID %d, want 23", got.ID)
	}
}

func mustQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestBasicAuth serves a registry with users: writes need a writer, reads
// any known user, and the rest get 401, in Confluent's error format.
func TestBasicAuth(t *testing.T) {
	r := open(t, newCluster(t, 3), Config{Users: map[string]string{
		"admin": "admin-secret", "order": "order-secret", "ops": "ops-secret"}})
	_, url := serve(t, r)
	register := `{"schema":` + mustQuote(orderID) + `}`
	const unauthorized = `{"error_code":401,"message":"Unauthorized"}`
	cases := []struct {
		name         string
		auth         []string
		method, path string
		body         string
		status       int
		answer       string // the whole body; "" checks the status only
	}{
		{"no credentials, read", nil, "GET", "/subjects", "", 401, unauthorized},
		{"no credentials, write", nil, "POST", "/subjects/" + subject + "/versions", register, 401, unauthorized},
		{"wrong password", []string{"admin", "order-secret"}, "GET", "/subjects", "", 401, unauthorized},
		{"unknown user", []string{"nobody", ""}, "GET", "/config", "", 401, unauthorized},
		{"admin writes", []string{"admin", "admin-secret"}, "POST", "/subjects/" + subject + "/versions", register, 200, `{"id":1}`},
		{"a reader reads", []string{"order", "order-secret"}, "GET", "/subjects", "", 200, `["orders-value"]`},
		{"a reader looks up", []string{"order", "order-secret"}, "POST", "/subjects/" + subject, register, 200, ""},
		{"a reader checks compatibility", []string{"order", "order-secret"}, "POST", "/compatibility/subjects/" + subject + "/versions/latest", register, 200, `{"is_compatible":true}`},
		{"a reader may not register", []string{"order", "order-secret"}, "POST", "/subjects/" + subject + "/versions", register, 403,
			`{"error_code":40301,"message":"User order is denied operation Write on Subject: orders-value"}`},
		{"a reader may not set a level", []string{"ops", "ops-secret"}, "PUT", "/config", `{"compatibility":"NONE"}`, 403,
			`{"error_code":40301,"message":"User ops is denied operation Write on Cluster: schema-registry"}`},
		{"a reader may not delete", []string{"order", "order-secret"}, "DELETE", "/subjects/" + subject, "", 403, ""},
		{"admin sets a level", []string{"admin", "admin-secret"}, "PUT", "/config/" + subject, `{"compatibility":"FULL"}`, 200, `{"compatibility":"FULL"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := call(t, tc.method, url, tc.path, tc.body, tc.auth...)
			if status != tc.status || (tc.answer != "" && body != tc.answer) {
				t.Fatalf("%s %s: %d %s, want %d %s", tc.method, tc.path, status, body, tc.status, tc.answer)
			}
		})
	}

	// Writers replaces admin as who may write.
	r = open(t, newCluster(t, 1), Config{Users: map[string]string{"admin": "a", "ops": "o"}, Writers: []string{"ops"}})
	_, url = serve(t, r)
	if status, _ := call(t, "PUT", url, "/config", `{"compatibility":"FULL"}`, "admin", "a"); status != 403 {
		t.Fatalf("admin, not a writer, set the level: %d", status)
	}
	if status, _ := call(t, "PUT", url, "/config", `{"compatibility":"FULL"}`, "ops", "o"); status != 200 {
		t.Fatalf("ops, a writer, could not set the level: %d", status)
	}
}

// TestNotReady holds back a new instance's reads of the topic: until it has
// read it, it answers 503, then what the first instance wrote.
func TestNotReady(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, 3)
	first := open(t, c, Config{})
	cl, _ := serve(t, first)
	create(t, cl, subject, sr.Schema{Schema: orderID})
	first.Close()

	release := make(chan struct{})
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		select {
		case <-release:
			c.DropControl()
		default:
			c.KeepControl()
			c.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	r, err := Open(ctx, Config{Brokers: c.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, url := serve(t, r)
	if err := r.Ready(); err == nil {
		t.Fatal("ready before reading the topic")
	}
	status, body := call(t, http.MethodGet, url, "/subjects", "")
	if status != 503 || !strings.HasPrefix(body, `{"error_code":50003,"message":"schema registry not ready`) {
		t.Fatalf("before ready: %d %s", status, body)
	}
	close(release)
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.WaitReady(waitCtx); err != nil {
		t.Fatal(err)
	}
	if status, body := call(t, http.MethodGet, url, "/subjects", ""); status != 200 || body != `["orders-value"]` {
		t.Fatalf("once ready: %d %s", status, body)
	}
}
