package payment_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/payment"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// TestKafkaDownIs503 posts a valid payment to a payment service whose brokers
// do not answer: the client gets a 503 and an explanation, not a hang.
func TestKafkaDownIs503(t *testing.T) {
	_, cat := shoptest.Cluster(t) // for the registry only
	svc, err := payment.New(config.Config{Brokers: []string{"127.0.0.1:1"}, InstanceID: "1", Logger: shoptest.Logger(t)},
		cat, payment.Options{DeliveryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	svc.Routes(r)
	srv := httptest.NewServer(r)
	defer srv.Close()

	start := time.Now()
	resp, err := http.Post(srv.URL+"/payment", "application/json",
		strings.NewReader(`{"user_id": 42, "cart": [{"name": "MacBook", "price": 1999, "quantity": 1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusServiceUnavailable || body["status"] != "error" || body["error"] == "" {
		t.Fatalf("with Kafka down: %d %v, want 503 with an error", resp.StatusCode, body)
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
