package services_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// Services only look their schemas up: a subject an operator set to FULL
// stays FULL however often they start.
func TestServicesLeaveCompatibilityAlone(t *testing.T) {
	stack, cat := shoptest.Cluster(t)
	ctx := context.Background()
	subject := schemas.Payments.Subject
	for _, r := range cat.Registry().SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatFull}, subject) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	for range 2 { // a start, and a restart
		s, err := shop.Start(ctx, shoptest.Config(t, stack), cat, shop.Options{})
		if err != nil {
			t.Fatal(err)
		}
		readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = s.WaitReady(readyCtx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	res := cat.Registry().Compatibility(ctx, subject)
	if len(res) != 1 || res[0].Err != nil || res[0].Level != sr.CompatFull {
		t.Fatalf("compatibility of %s after two starts = %+v, want FULL", subject, res)
	}
	// make schemas keeps it too.
	if err := infra.RegisterSchemas(ctx, stack.RegistryURL); err != nil {
		t.Fatal(err)
	}
	if res := cat.Registry().Compatibility(ctx, subject); res[0].Level != sr.CompatFull {
		t.Fatalf("compatibility of %s after make schemas = %v, want FULL", subject, res[0].Level)
	}
}

// A service whose schemas are not registered is not ready, says which
// subject lacks which schema, and becomes ready once they are registered.
func TestUnregisteredSchemasAreNotReady(t *testing.T) {
	ctx := context.Background()
	stack, err := infra.StartEmbedded(ctx, infra.EmbeddedConfig{NoSchemas: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	reg, err := schemas.NewRegistryClient(stack.RegistryURL)
	if err != nil {
		t.Fatal(err)
	}
	s, err := shop.Start(ctx, shoptest.Config(t, stack), schemas.NewCatalog(reg), shop.Options{Services: []string{"order"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })

	readyz := func() (int, string) {
		resp, err := http.Get(s.URL("order") + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Error
	}
	eventually(t, 10*time.Second, func() error {
		code, msg := readyz()
		if code != http.StatusServiceUnavailable || !strings.Contains(msg, "subject dlq-payment-value lacks the schema of dead_letter.avsc") ||
			!strings.Contains(msg, "subject order-created-value lacks the schema of order_created.avsc") {
			return fmt.Errorf("/readyz = %d %q, want 503 naming the subjects and their schemas", code, msg)
		}
		return nil
	})

	if err := infra.RegisterSchemas(ctx, stack.RegistryURL); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.WaitReady(waitCtx); err != nil {
		t.Fatalf("not ready once the schemas are registered: %v", err)
	}
}
