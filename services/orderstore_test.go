package services_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/order"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
	"github.com/blackfriday-kafka/shop/txn/store"
)

// The order step keeps the payments it ordered in a store on disk, written
// only after Kafka committed them. These tests kill the order process at
// each point of a transaction around that write, write every payment a
// second time, and check that each payment has exactly one order: none
// lost, none twice.

// orderShop is one cluster with the order service's processes on it, their
// state in one directory.
type orderShop struct {
	t     *testing.T
	stack *infra.Embedded
	cat   *schemas.Catalog
	cl    *kgo.Client
	adm   *kadm.Client
	state string
	paid  []string // the payment IDs written, each once
	recs  int64    // payment records written, duplicates included
}

func newOrderShop(t *testing.T) *orderShop {
	stack, cat := shoptest.Cluster(t)
	cl, adm := shoptest.Clients(t, stack)
	return &orderShop{t: t, stack: stack, cat: cat, cl: cl, adm: adm, state: t.TempDir()}
}

// pay writes n new payments to payment-successful, and returns them.
func (s *orderShop) pay(n int) []*kgo.Record {
	s.t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		p := schemas.PaymentSucceeded{PaymentID: uuid.NewString(), UserID: int64(1 + len(s.paid)%50),
			Cart:   []schemas.CartItem{{Name: "Gift card", UnitPriceCents: 2500, Quantity: 1}},
			PaidAt: time.Now().UTC().Truncate(time.Millisecond)}
		p.TotalCents = schemas.CartTotal(p.Cart)
		r, err := schemas.Payments.Codec(s.cat).Record(&p)
		if err != nil {
			s.t.Fatal(err)
		}
		recs[i] = r
		s.paid = append(s.paid, p.PaymentID)
	}
	s.write(recs)
	return recs
}

// again writes the same payments a second time, as a replayed producer or
// two payment instances racing on one key would.
func (s *orderShop) again(recs []*kgo.Record) {
	s.t.Helper()
	copies := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		copies[i] = &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value}
	}
	s.write(copies)
}

func (s *orderShop) write(recs []*kgo.Record) {
	s.t.Helper()
	if err := s.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		s.t.Fatal(err)
	}
	s.recs += int64(len(recs))
}

// start runs `shop order` as instance 1 with its state in s.state, and env
// on top.
func (s *orderShop) start(env ...string) *exec.Cmd {
	s.t.Helper()
	cmd := exec.Command(shopBin(s.t), "order")
	cmd.Env = append(append(os.Environ(),
		"KAFKA_BROKERS="+s.stack.BrokerList(), "SCHEMA_REGISTRY_URL="+s.stack.RegistryURL,
		"PORT=0", "INSTANCE_ID=1", "LOG_LEVEL=warn", "STATE_DIR="+s.state), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// killedAt starts the order service with ORDER_KILL_AT=point and waits
// until it has killed itself there.
func (s *orderShop) killedAt(point order.KillPoint) {
	s.t.Helper()
	cmd := s.start("ORDER_KILL_AT=" + string(point))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			s.t.Fatalf("order service at %s exited with %v, want killed by SIGKILL", point, err)
		}
	case <-time.After(60 * time.Second):
		s.t.Fatalf("order service never reached %s", point)
	}
}

// drained waits until the order service's group has consumed every payment
// record written.
func (s *orderShop) drained() {
	s.t.Helper()
	eventually(s.t, 90*time.Second, func() error {
		offsets, err := s.adm.FetchOffsets(context.Background(), schemas.Group("order"))
		if err != nil {
			return err
		}
		var sum int64
		offsets.Each(func(o kadm.OffsetResponse) { sum += o.At })
		if sum < s.recs {
			return fmt.Errorf("the order service consumed %d of %d payment records", sum, s.recs)
		}
		return nil
	})
}

// orderCount is what order-created and payment-duplicates hold, read
// committed, against the payments written.
type orderCount struct {
	orders, duplicates int
	ordered            []string // payments with an order
	lost, twice        []string // payments with no order, with more than one
}

func (c orderCount) exact() error {
	if len(c.lost) > 0 || len(c.twice) > 0 {
		return fmt.Errorf("%d payments without an order (%v), %d with more than one (%v)", len(c.lost), c.lost, len(c.twice), c.twice)
	}
	return nil
}

func (s *orderShop) count() orderCount {
	s.t.Helper()
	var c orderCount
	of := make(map[string]int, len(s.paid))
	for _, r := range readCommitted(s.t, s.stack.Brokers, schemas.Orders.Name) {
		o, err := schemas.Orders.Codec(s.cat).Decode(context.Background(), r.Value)
		if err != nil {
			s.t.Fatalf("order at %d/%d: %v", r.Partition, r.Offset, err)
		}
		of[o.PaymentID]++
		c.orders++
	}
	for _, id := range s.paid {
		switch of[id] {
		case 0:
			c.lost = append(c.lost, id)
		case 1:
			c.ordered = append(c.ordered, id)
		default:
			c.ordered = append(c.ordered, id)
			c.twice = append(c.twice, id)
		}
	}
	c.duplicates = len(readCommitted(s.t, s.stack.Brokers, schemas.Duplicates.Name))
	return c
}

// killAndRetry is the scenario of the kill tests: 100 payments, the order
// service killed at point, every one of them written again with 50 new
// ones, the order service started again on the store the killed one left;
// it returns the orders once the restarted service has consumed them all,
// and what order-created held right after the kill. inspect, if not nil,
// looks at the store the killed process left, before the restart.
func killAndRetry(t *testing.T, point order.KillPoint, inspect func(m *store.Memory, afterKill orderCount)) (afterKill, final orderCount) {
	s := newOrderShop(t)
	first := s.pay(100)
	s.killedAt(point)
	afterKill = s.count()
	if inspect != nil {
		db, err := store.Open(s.state, store.Options{}) // one service: STATE_DIR is its own
		if err == nil && db.Rebuilt != "" {
			err = fmt.Errorf("the killed process left no readable store: %s", db.Rebuilt)
		}
		if err != nil {
			t.Fatal(err)
		}
		inspect(db.Memory(order.MemoryName), afterKill)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s.again(first)
	s.pay(50)
	s.start()
	s.drained()
	return afterKill, s.count()
}

func TestOrderStoreKilledBeforeTheCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real process")
	}
	afterKill, got := killAndRetry(t, order.KillBeforeCommit, nil)
	if afterKill.orders != 0 {
		t.Fatalf("%d orders committed before the kill, want none: the kill came after a commit", afterKill.orders)
	}
	if err := got.exact(); err != nil {
		t.Fatal(err)
	}
	if got.orders != 150 || got.duplicates != 100 {
		t.Fatalf("%d orders and %d duplicates dropped, want 150 and 100", got.orders, got.duplicates)
	}
}

func TestOrderStoreKilledBetweenTheCommitAndTheStore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real process")
	}
	afterKill, got := killAndRetry(t, order.KillAfterCommit, func(m *store.Memory, afterKill orderCount) {
		// The store covers the partitions as the restore at the
		// assignment left them, and none of the orders committed since:
		// the kill came before its write.
		covered := 0
		for p := range int32(infra.Partitions) {
			if _, ok, err := m.Covered(p); err != nil {
				t.Fatal(err)
			} else if ok {
				covered++
			}
		}
		if covered != infra.Partitions {
			t.Fatalf("the store the killed process left covers %d partitions, want %d", covered, infra.Partitions)
		}
		for _, id := range afterKill.ordered {
			key := uuid.MustParse(id)
			if _, _, ok, err := m.Get(key[:]); ok || err != nil {
				t.Errorf("payment %s in the store after the kill (%v)", id, err)
			}
		}
	})
	// The killed transaction committed orders the store never noted: the
	// restart knows them from the tail of order-created only.
	if afterKill.orders == 0 {
		t.Fatal("no order committed before the kill: the kill came before the commit")
	}
	t.Logf("%d orders committed by the killed process, not in its store", afterKill.orders)
	if err := got.exact(); err != nil {
		t.Fatal(err)
	}
	if got.orders != 150 || got.duplicates != 100 {
		t.Fatalf("%d orders and %d duplicates dropped, want 150 and 100", got.orders, got.duplicates)
	}
}

// TestOrderStoreWrittenBeforeTheCommitLosesOrders is the control: a store
// written before the transaction commits remembers orders Kafka never
// committed, and the check above catches the payments that then have none.
func TestOrderStoreWrittenBeforeTheCommitLosesOrders(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real process")
	}
	afterKill, got := killAndRetry(t, order.KillStoredBeforeCommit, nil)
	if afterKill.orders != 0 {
		t.Fatalf("%d orders committed before the kill, want none", afterKill.orders)
	}
	err := got.exact()
	if err == nil || len(got.lost) == 0 {
		t.Fatalf("a store written before the commit lost no order (%v): the check cannot tell", err)
	}
	t.Logf("the control: %v", err)
}

// TestOrderStoreDeletedBetweenRuns: with STATE_DIR deleted between two runs
// the order service rebuilds its memory from order-created, and a payment
// written twice still gives one order.
func TestOrderStoreDeletedBetweenRuns(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"order"}}, nil)
	s := &orderShop{t: t, stack: env.Stack, cat: env.Catalog, state: env.Config.StateDir}
	s.cl, s.adm = shoptest.Clients(t, env.Stack)
	first := s.pay(20)
	s.drained()
	if err := env.Shop.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(env.Config.StateDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(env.Config.StateDirOf("order")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the store is still there: %v", err)
	}
	shoptest.Services(t, env.Config, env.Catalog, shop.Options{Services: []string{"order"}})
	s.again(first)
	s.drained()
	got := s.count()
	if err := got.exact(); err != nil {
		t.Fatal(err)
	}
	if got.orders != 20 || got.duplicates != 20 {
		t.Fatalf("%d orders and %d duplicates dropped, want 20 and 20", got.orders, got.duplicates)
	}
}

// TestOrderStoreReadsWhatAnotherInstanceOrdered: while an instance is
// stopped, another serves its partitions; started again on its own store,
// which misses those orders, the first one reads them from order-created
// before it takes a payment, and drops their duplicates.
func TestOrderStoreReadsWhatAnotherInstanceOrdered(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"order"}}, nil)
	s := &orderShop{t: t, stack: env.Stack, cat: env.Catalog}
	s.cl, s.adm = shoptest.Clients(t, env.Stack)
	s.pay(10)
	s.drained()
	if err := env.Shop.Stop(); err != nil {
		t.Fatal(err)
	}
	other := env.Config
	other.InstanceID = "2" // a store of its own
	two := shoptest.Services(t, other, env.Catalog, shop.Options{Services: []string{"order"}})
	byTwo := s.pay(10)
	s.drained()
	if err := two.Stop(); err != nil {
		t.Fatal(err)
	}
	if env.Config.StateDirOf("order") == other.StateDirOf("order") {
		t.Fatal("the two instances share a store")
	}
	shoptest.Services(t, env.Config, env.Catalog, shop.Options{Services: []string{"order"}})
	s.again(byTwo)
	s.drained()
	got := s.count()
	if err := got.exact(); err != nil {
		t.Fatal(err)
	}
	if got.orders != 20 || got.duplicates != 10 {
		t.Fatalf("%d orders and %d duplicates dropped, want 20 and 10", got.orders, got.duplicates)
	}
}

// TestOrderStoreBehindTheTopicsStart: the records of order-created deleted
// past what a stopped instance's store covers (retention, or DeleteRecords,
// went past it). Started again, it reads the topic from its new start and
// keeps the orders its store holds, which Kafka did commit: a payment it
// ordered before, written again, is dropped, not ordered a second time.
func TestOrderStoreBehindTheTopicsStart(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"order"}}, nil)
	s := &orderShop{t: t, stack: env.Stack, cat: env.Catalog}
	s.cl, s.adm = shoptest.Clients(t, env.Stack)
	ctx := context.Background()
	first := s.pay(10)
	s.drained()
	if err := env.Shop.Stop(); err != nil {
		t.Fatal(err)
	}
	ends, err := s.adm.ListEndOffsets(ctx, schemas.Orders.Name)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	gone := make(kadm.Offsets)
	ends.Each(func(o kadm.ListedOffset) {
		gone.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.Offset, LeaderEpoch: -1})
	})
	deleted, err := s.adm.DeleteRecords(ctx, gone)
	if err == nil {
		err = deleted.Error()
	}
	if err != nil {
		t.Fatal(err)
	}

	shoptest.Services(t, env.Config, env.Catalog, shop.Options{Services: []string{"order"}})
	s.again(first)
	s.pay(5)
	s.drained()
	got := s.count()
	// The first ten orders are gone from the topic; none was made again.
	if len(got.twice) > 0 || len(got.lost) != len(first) || got.orders != 5 || got.duplicates != 10 {
		t.Fatalf("%d orders on the topic, %d duplicates dropped, %d payments without an order on it, %d with two; want 5, 10, the 10 deleted, 0",
			got.orders, got.duplicates, len(got.lost), len(got.twice))
	}
}
