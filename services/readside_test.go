package services_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra/webserver"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// TestReadSideIsBounded: what the read side shows stays as small as the
// shop's own vocabulary, whatever a client or a producer sends it.
func TestReadSideIsBounded(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"order", "email", "analytics"}}, nil)
	analytics := env.Shop.URL("analytics")

	t.Run("limit is a number within bounds", func(t *testing.T) {
		for _, u := range []string{env.Shop.URL("order") + "/orders", env.Shop.URL("email") + "/emails"} {
			for _, q := range []string{"abc", "-1", "1001", "1e3", "99999999999999999999"} {
				code, body := fetch(t, u+"?limit="+q)
				if code != http.StatusBadRequest || !strings.Contains(body, `"field":"limit"`) {
					t.Errorf("GET %s?limit=%s: %d %s, want 400 naming limit", u, q, code, body)
				}
			}
			if code, _ := fetch(t, u+"?limit=1000"); code != http.StatusOK {
				t.Errorf("GET %s?limit=1000: %d, want 200", u, code)
			}
		}
	})

	t.Run("dead letters of unknown classes are counted as other", func(t *testing.T) {
		cl, _ := shoptest.Clients(t, env.Stack)
		for i := range 50 {
			r := &kgo.Record{Topic: schemas.PaymentDLQ.Name, Value: []byte("not a dead letter"),
				Headers: []kgo.RecordHeader{{Key: "error.class", Value: fmt.Appendf(nil, "made-up-%d", i)}}}
			if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, 15*time.Second, func() error {
			var a struct {
				ByClass map[string]int64 `json:"dlq_by_class"`
			}
			get(t, analytics+"/analytics", &a)
			if a.ByClass["other"] != 50 {
				return fmt.Errorf("dead letters by class: %v, want other=50", a.ByClass)
			}
			for class := range a.ByClass {
				if class != "other" && !slices.Contains(schemas.ErrorClasses, schemas.ErrorClass(class)) {
					return fmt.Errorf("a row for class %q", class)
				}
			}
			return nil
		})
	})

	t.Run("no directory listings, headers on every page", func(t *testing.T) {
		for _, p := range []string{"/dashboard/", "/dashboard/vendor/", "/dashboard/vendor"} {
			if code, body := fetch(t, analytics+p); code != http.StatusNotFound {
				t.Errorf("GET %s: %d %.80s, want 404", p, code, body)
			}
		}
		for _, p := range []string{"/", "/dashboard/dashboard.js", "/analytics", "/nowhere"} {
			resp, err := http.Get(analytics + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Content-Security-Policy") != webserver.ContentSecurityPolicy {
				t.Errorf("GET %s: %d without nosniff or the content security policy: %v", p, resp.StatusCode, resp.Header)
			}
		}
	})
}
