package services_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// TestOrderServiceKilledMidStream kills the order service with SIGKILL while
// it works through 1,000 payments, restarts it, and checks that order-created,
// read with read_committed, holds exactly one order per payment.
func TestOrderServiceKilledMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real process")
	}
	stack, cat := shoptest.Cluster(t)
	bin := shopBin(t)
	state := t.TempDir() // the restart finds the store the killed process left
	startOrder := func() *exec.Cmd {
		cmd := exec.Command(bin, "order")
		cmd.Env = append(os.Environ(),
			"KAFKA_BROKERS="+stack.BrokerList(), "SCHEMA_REGISTRY_URL="+stack.RegistryURL,
			"PORT=0", "INSTANCE_ID=1", "PROCESSING_DELAY=3ms", "LOG_LEVEL=warn", "STATE_DIR="+state)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd
	}

	const n = 1000
	cl, adm := shoptest.Clients(t, stack)
	paid := make(map[string]bool, n)
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		p := schemas.PaymentSucceeded{PaymentID: uuid.NewString(), UserID: int64(1 + i%50),
			Cart:   []schemas.CartItem{{Name: "Gift card", UnitPriceCents: 2500, Quantity: 1}},
			PaidAt: time.Now().UTC().Truncate(time.Millisecond)}
		p.TotalCents = schemas.CartTotal(p.Cart)
		r, err := schemas.Payments.Codec(cat).Record(&p)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
		paid[p.PaymentID] = true
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	consumed := func() int64 {
		offsets, err := adm.FetchOffsets(context.Background(), schemas.Group("order"))
		if err != nil {
			return 0
		}
		var sum int64
		offsets.Each(func(o kadm.OffsetResponse) { sum += o.At })
		return sum
	}
	first := startOrder()
	eventually(t, 60*time.Second, func() error {
		if c := consumed(); c < 200 {
			return fmt.Errorf("order service committed %d of %d payments", c, n)
		}
		return nil
	})
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	killedAt := consumed()
	if killedAt >= n {
		t.Fatalf("the order service finished before it could be killed (%d)", killedAt)
	}
	t.Logf("killed the order service after %d of %d payments", killedAt, n)

	second := startOrder()
	eventually(t, 90*time.Second, func() error {
		if c := consumed(); c < n {
			return fmt.Errorf("restarted order service committed %d of %d payments", c, n)
		}
		return nil
	})

	orders := readCommitted(t, stack.Brokers, schemas.Orders.Name)
	seen := make(map[string]int, n)
	for _, r := range orders {
		o, err := schemas.Orders.Codec(cat).Decode(context.Background(), r.Value)
		if err != nil {
			t.Fatalf("order at %d/%d: %v", r.Partition, r.Offset, err)
		}
		if !paid[o.PaymentID] || o.OrderID != schemas.OrderID(o.PaymentID) || string(r.Key) != strconv.FormatInt(o.UserID, 10) {
			t.Fatalf("unexpected order %+v key %s", o, r.Key)
		}
		seen[o.PaymentID]++
	}
	for id := range paid {
		if seen[id] != 1 {
			t.Errorf("payment %s has %d orders, want 1", id, seen[id])
		}
	}
	if len(orders) != n {
		t.Fatalf("order-created holds %d orders for %d payments", len(orders), n)
	}

	// SIGTERM is a clean stop: exit status 0, within the shutdown budget.
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- second.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("order service after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("order service still running 20s after SIGTERM")
	}
}

// readCommitted reads a whole topic with read_committed.
func readCommitted(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	recs, err := infra.ReadTopic(context.Background(), brokers, topic, kgo.ReadCommitted(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
