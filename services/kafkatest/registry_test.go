//go:build kafka

package kafkatest

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
)

// TestSchemasSurviveARegistryKill: a payment written with version 2 of its
// schema, then the registry killed with SIGKILL and started again as
// make kafka-up does, then new services: the schema has the same ID, the
// payment becomes an order (no dead letter), and analytics counts it. The
// registry keeps its state in Kafka, whichever runs: the project's (the
// _schemas topic) or Apicurio (its kafkasql storage).
func TestSchemasSurviveARegistryKill(t *testing.T) {
	ctx := context.Background()
	v2text, err := os.ReadFile(filepath.Join(root, "schemas", "evolution", "payment_succeeded_v2.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := schemas.RegisterText(ctx, catalog.Registry(), schemas.Payments.Subject, string(v2text))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := avro.Parse(string(v2text))
	if err != nil {
		t.Fatal(err)
	}
	paymentID := fmt.Sprintf("9b2e6f0a-3c4d-4e5f-8a7b-%012d", time.Now().UnixNano()%1e12)
	body, err := avro.Marshal(v2, map[string]any{"payment_id": paymentID, "user_id": int64(77),
		"cart":        []map[string]any{{"name": "Kindle", "unit_price_cents": int64(8999), "quantity": 1}},
		"total_cents": int64(8999), "currency": "EUR", "paid_at": time.Now().UTC().Truncate(time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	from := endOffsets(t, schemas.Orders.Name, schemas.PaymentDLQ.Name)
	cl, err := kgo.NewClient(adminOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := &kgo.Record{Topic: schemas.Payments.Name, Key: []byte("77"), Value: append(binary.BigEndian.AppendUint32([]byte{0}, uint32(ss.ID)), body...)}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}

	killRegistry(t)
	up := exec.CommandContext(ctx, filepath.Join(root, "scripts", "kafka-up"))
	up.Dir = root
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("kafka-up after the kill: %v\n%s", err, out)
	}
	if got, err := catalog.Registry().SchemaByVersion(ctx, schemas.Payments.Subject, ss.Version); err != nil || got.ID != ss.ID {
		t.Fatalf("after the restart version %d of %s has ID %d (%v), before %d", ss.Version, schemas.Payments.Subject, got.ID, err, ss.ID)
	}

	// New services: their codecs learn the schema from the restarted registry.
	cat, err := schemas.Connect(ctx, registryURL, tools.Registry()...)
	if err != nil {
		t.Fatal(err)
	}
	catalog = cat
	s := startShop(t, []string{"order", "email", "analytics"}, "kt-registry", 0)
	eventually(t, 60*time.Second, func() error {
		orders := readFrom(t, Offsets{schemas.Orders.Name: from[schemas.Orders.Name]}, kgo.ReadCommitted(), 300*time.Millisecond)
		for _, r := range orders {
			if o, err := schemas.Orders.Codec(cat).Decode(ctx, r.Value); err == nil && o.PaymentID == paymentID {
				return nil
			}
		}
		return fmt.Errorf("no order of the v2 payment yet (%d orders since the test began)", len(orders))
	})
	if dead := readFrom(t, Offsets{schemas.PaymentDLQ.Name: from[schemas.PaymentDLQ.Name]}, kgo.ReadCommitted(), 300*time.Millisecond); len(dead) != 0 {
		t.Fatalf("%d dead letters since the test began, want none", len(dead))
	}
	eventually(t, 60*time.Second, func() error {
		var a struct {
			TotalPayments int64 `json:"total_payments"`
		}
		if err := getJSON(s.URL("analytics")+"/analytics", &a); err != nil || a.TotalPayments == 0 {
			return fmt.Errorf("analytics: %+v %v", a, err)
		}
		return nil
	})
}

// killRegistry sends SIGKILL to the registry make kafka-up started.
func killRegistry(t *testing.T) {
	t.Helper()
	for _, name := range []string{"registry.pid", "apicurio.pid"} {
		b, err := os.ReadFile(filepath.Join(root, ".run", "kafka", name))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || syscall.Kill(pid, 0) != nil {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		t.Logf("registry (%s, pid %d) killed", name, pid)
		for syscall.Kill(pid, 0) == nil {
			time.Sleep(50 * time.Millisecond)
		}
		return
	}
	t.Fatal("no registry of make kafka-up runs (.run/kafka/registry.pid or apicurio.pid)")
}
