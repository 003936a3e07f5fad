//go:build kafka

package kafkatest

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestRebalanceWhileTransactionsOpen changes the order service's consumer
// group under load: one instance, then three, then two, while payments
// stream in and transactions are open. Partitions move between instances in
// the middle of transactions; each revoked instance must abort, and the next
// owner must start from the last committed offset: no order doubled, none
// missing.
func TestRebalanceWhileTransactionsOpen(t *testing.T) {
	waitISRFull(t, 60*time.Second)
	adm := admin(t)
	ctx := context.Background()
	_, outputs, w := streamStart(t)

	// A processing delay keeps each transaction open for a while, so the
	// rebalances land in the middle of them.
	const delay = 3 * time.Millisecond
	startShop(t, []string{"email"}, "kt-1", 0)
	startShop(t, []string{"order"}, "kt-1", delay)

	paid := newPaid()
	sent := make(chan error, 1)
	go func() { sent <- produceStream(ctx, t, paid, 3000, 20*time.Second, 21) }()

	members := func(want int) {
		t.Helper()
		eventually(t, 60*time.Second, func() error {
			n, state, err := groupMembers(ctx, adm, "order")
			if err != nil {
				return err
			}
			if n != want || state != "Stable" {
				return fmt.Errorf("order-service-group: %d members, %s; want %d, Stable", n, state, want)
			}
			return nil
		})
	}
	members(1)
	time.Sleep(4 * time.Second)
	t.Logf("adding two order instances after %d payments", paid.len())
	startShop(t, []string{"order"}, "kt-2", delay)
	third := startShop(t, []string{"order"}, "kt-3", delay)
	members(3)
	t.Logf("three members after %d payments", paid.len())
	time.Sleep(4 * time.Second)
	t.Logf("removing one order instance after %d payments", paid.len())
	if err := third.Stop(); err != nil {
		t.Fatalf("stopping the third order instance: %v", err)
	}
	members(2)
	t.Logf("two members after %d payments", paid.len())

	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	all := paid.snapshot()
	w.waitDrained(t, all, 90*time.Second)
	tally := checkExactlyOnce(t, outputs, all)
	if tally.Orders != len(all) {
		t.Fatalf("%d payments, %d orders", len(all), tally.Orders)
	}
}
