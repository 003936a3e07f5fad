package payment_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra/webserver"
	"github.com/blackfriday-kafka/shop/infra/webserver/webservertest"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/poison/pills"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/payment"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// TestKafkaDownIs503 posts a valid payment to a payment service whose brokers
// do not answer: the client gets a 503 and an explanation, not a hang.
func TestKafkaDownIs503(t *testing.T) {
	srv := kafkaDown(t)
	start := time.Now()
	resp, err := http.Post(srv.URL+"/payment", "application/json",
		strings.NewReader(`{"user_id": 42, "cart": [{"name": "MacBook", "price": 1999, "quantity": 1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusServiceUnavailable || body["status"] != "error" || body["error"] == "" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("with Kafka down: %d %v %v, want 503 with an error and Retry-After", resp.StatusCode, resp.Header, body)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the 503 took %v", took)
	}
}

func TestParseRequestNamesTheField(t *testing.T) {
	for _, tc := range []struct{ body, field string }{
		{`[1, 2]`, "body"},
		{`null`, "body"},
		{`{"user_id": 1.5, "cart": []}`, "user_id"},
		{`{"user_id": 99999999999999999999, "cart": []}`, "user_id"},
		{`{"user_id": 1, "cart": [42]}`, "cart[0]"},
		{`{"user_id": 1, "cart": [{"price": 1, "quantity": 1}]}`, "cart[0].name"},
		{`{"user_id": 1, "cart": [{"name": 5, "price": 1, "quantity": 1}]}`, "cart[0].name"},
		{`{"user_id": 1, "cart": [{"name": "a", "price": "1", "quantity": 1}]}`, "cart[0].price"},
		{`{"user_id": 1, "cart": [{"name": "a", "price": 1.234, "quantity": 1}]}`, "cart[0].price"},
		{`{"user_id": 1, "cart": [{"name": "a", "price": 1}]}`, "cart[0].quantity"},
		{`{"user_id": 1, "cart": [{"name": "a", "price": 1, "quantity": 2.5}]}`, "cart[0].quantity"},
		{`{"user_id": 1, "cart": [{"name": "a", "price": 1, "quantity": 1}, {"name": "b", "price": 1, "quantity": 3000000000}]}`, "cart[1].quantity"},
	} {
		if _, fe := payment.ParseRequest([]byte(tc.body)); fe == nil || fe.Field != tc.field {
			t.Errorf("%s: error %v, want one on %s", tc.body, fe, tc.field)
		}
	}
	req, fe := payment.ParseRequest([]byte(`{"user_id": 42, "cart": [{"name": "MacBook", "price": 1999.99, "quantity": 2}]}`))
	if fe != nil || req.UserID != 42 || len(req.Cart) != 1 || req.Cart[0].UnitPriceCents != 199999 || req.Cart[0].Quantity != 2 {
		t.Fatalf("valid request parsed as %+v, %v", req, fe)
	}
}

// kafkaDown is a payment service whose brokers do not answer, behind an
// HTTP server with the service's bounds: what a request costs before it
// reaches Kafka.
func kafkaDown(t *testing.T) *httptest.Server {
	t.Helper()
	_, cat := shoptest.Cluster(t) // for the registry only
	svc, err := payment.New(config.Config{Brokers: []string{"127.0.0.1:1"}, InstanceID: "1", Logger: shoptest.Logger(t), StateDir: t.TempDir()},
		cat, payment.Options{DeliveryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	svc.Routes(r)
	srv := httptest.NewUnstartedServer(r)
	srv.Config = webserver.New(r, shoptest.Logger(t))
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// TestHostileBodiesCostAlmostNothing: each body a hostile client would send
// gets its 4xx naming the field, and reading it allocates a bounded amount
// whatever its size: the body is read token by token, and refused at the
// first token that breaks a rule.
func TestHostileBodiesCostAlmostNothing(t *testing.T) {
	srv := kafkaDown(t)
	for _, tc := range []struct {
		name, body string
		code       int
		field      string
		maxAlloc   uint64 // bytes the server may allocate reading it
	}{
		{"a price of 900,000 digits", `{"user_id": 1, "cart": [{"name": "TV", "price": ` + strings.Repeat("9", 900_000) + `, "quantity": 1}]}`,
			400, "cart[0].price", 8 << 20},
		{"a price of 1e999999999 euros", `{"user_id": 1, "cart": [{"name": "TV", "price": 1e999999999, "quantity": 1}]}`,
			400, "cart[0].price", 1 << 20},
		{"a cart of 1 MB of numbers", `{"user_id": 1, "cart": [1` + strings.Repeat(",1", 500_000) + `]}`,
			400, "cart[0]", 1 << 20},
		{"a cart of 1 MB of items", `{"user_id": 1, "cart": [` + strings.TrimSuffix(strings.Repeat(`{"name": "TV", "price": 1, "quantity": 1},`, 25_000), ",") + `]}`,
			400, "cart", 1 << 20},
		{"100 user_id keys", `{` + strings.Repeat(`"user_id": 1, `, 100) + `"cart": []}`,
			400, "user_id", 1 << 20},
		{"a price given twice", `{"user_id": 1, "cart": [{"name": "TV", "price": 1, "price": 900, "quantity": 1}]}`,
			400, "cart[0].price", 1 << 20},
		{"more than 1 MiB", `{"user_id": 1, "note": "` + strings.Repeat("x", 1<<20) + `", "cart": []}`,
			413, "body", 8 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			resp, err := http.Post(srv.URL+"/payment", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]string
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			runtime.ReadMemStats(&after)
			if resp.StatusCode != tc.code || body["field"] != tc.field {
				t.Fatalf("%d %v, want %d naming %s", resp.StatusCode, body, tc.code, tc.field)
			}
			// The client's side of the request is in the figure too, a
			// few times the body: the bound is on the server's share.
			if spent := after.TotalAlloc - before.TotalAlloc; spent > tc.maxAlloc+4*uint64(len(tc.body)) {
				t.Fatalf("%d bytes allocated for a body of %d, want at most %d more than the client's", spent, len(tc.body), tc.maxAlloc)
			}
		})
	}
	// And the service is none the worse: a valid payment gets past every
	// check (to the 503 of the Kafka it cannot reach).
	resp, err := http.Post(srv.URL+"/payment", "application/json",
		strings.NewReader(`{"user_id": 42, "cart": [{"name": "MacBook", "price": 1999, "quantity": 1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a valid payment after them: %d, want 503 (no Kafka)", resp.StatusCode)
	}
}

// TestHugeHeadersAreRefused: 1.2 MB of headers is refused before any
// handler.
func TestHugeHeadersAreRefused(t *testing.T) {
	webservertest.RefusesHugeHeaders(t, kafkaDown(t).URL, "/payment")
}

// TestBodyTooSlowIs408: a body that does not arrive within the server's
// read timeout is answered as such, not as too large.
func TestBodyTooSlowIs408(t *testing.T) {
	srv := kafkaDown(t)
	srv.Config.ReadTimeout = 300 * time.Millisecond // the test's; the service's is webserver.ReadTimeout
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Headers announcing 100 bytes, and 10 of them.
	fmt.Fprintf(conn, "POST /payment HTTP/1.1\r\nHost: shop\r\nContent-Length: 100\r\n\r\n{\"user_id\"")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusRequestTimeout || body["field"] != "body" || !strings.Contains(body["error"], "was not received within") {
		t.Fatalf("a body that stopped half-way: %d %v, want 408 on body", resp.StatusCode, body)
	}
}

// TestAnswerIsTheResponse: the answer appended by hand says what a
// Response encoded by encoding/json says, names with quotes, accents and
// markup included.
func TestAnswerIsTheResponse(t *testing.T) {
	p := schemas.PaymentSucceeded{PaymentID: "8b0e5c1e-0000-4000-8000-000000000001", UserID: 42, TotalCents: 399998 + 1,
		Cart: []schemas.CartItem{{Name: `MacBook "Pro" <14>`, UnitPriceCents: 199999, Quantity: 2}, {Name: "Câble & prise", UnitPriceCents: 1, Quantity: 1}}}
	rec := &kgo.Record{Topic: "payment-successful", Partition: 2, Offset: 123456789}
	want := payment.Response{Status: "success", PaymentID: p.PaymentID, UserID: 42, Total: 399999, Topic: rec.Topic, Partition: 2, Offset: 123456789,
		Cart: []payment.Item{{Name: p.Cart[0].Name, Price: 199999, Quantity: 2}, {Name: p.Cart[1].Name, Price: 1, Quantity: 1}}}
	wantBody, _ := json.Marshal(want)
	decode := func(b []byte) any {
		var v any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return v
	}
	if got := payment.AnswerOf(&p, rec); !reflect.DeepEqual(decode(got), decode(wantBody)) {
		t.Fatalf("answer %s, want %s", got, wantBody)
	}
}

// TestEveryPillOfTheTutorialNamesItsField: the tutorial's bad payloads,
// truncated JSON included, each get the field the tutorial names.
func TestEveryPillOfTheTutorialNamesItsField(t *testing.T) {
	for _, p := range pills.Tutorial() {
		if _, fe := payment.ParseRequest(p.Value); fe == nil || fe.Field != p.Field {
			t.Errorf("%s: %v, want an error naming %s", p.Name, fe, p.Field)
		}
	}
	for _, body := range []string{`{"user_id": 1, "cart": [{"name": "a", "price": 1, "quantity": 1}]} trailing`,
		`{"user_id": 1, "cart": [{"name": "a", "price": 1, "quantity": 1}`, `{"user_id": 1, "cart": [{"name": "a", "pri`, ``} {
		if _, fe := payment.ParseRequest([]byte(body)); fe == nil || fe.Field != "body" {
			t.Errorf("%q: %v, want an error naming body", body, fe)
		}
	}
}
