//go:build kafka

package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/blackfriday-kafka/shop/schemas"
)

// brokerPID is the PID of Kafka node id as scripts/kafka-up recorded it, if
// that process is still the node it started.
func brokerPID(id int32) (int, error) {
	pidfile := filepath.Join(root, ".run", "kafka", fmt.Sprintf("node-%d.pid", id))
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", pidfile, err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "kafka.Kafka") {
		return 0, fmt.Errorf("%s: pid %d is not a running Kafka node", pidfile, pid)
	}
	return pid, nil
}

// TestBrokerKilledMidStream kills, with SIGKILL, the broker that coordinates
// the order service's transactions while payments stream in over HTTP. The
// pipeline must go on with two brokers (min.insync.replicas=2), every
// accepted payment must end with exactly one order and one email, and once
// scripts/kafka-up has restarted the node, every partition must have its
// three replicas back in sync.
func TestBrokerKilledMidStream(t *testing.T) {
	waitISRFull(t, 60*time.Second)
	adm := admin(t)
	ctx := context.Background()
	txnID := schemas.TransactionalID("order", "kt-1")
	coords := adm.FindTxnCoordinators(ctx, txnID)
	coord, ok := coords[txnID]
	if !ok || coord.Err != nil {
		t.Fatalf("transaction coordinator of %s: %v", txnID, coord.Err)
	}
	victim := coord.NodeID
	pid, err := brokerPID(victim)
	if err != nil {
		t.Skipf("cannot kill broker %d: %v (start the cluster with make kafka-up)", victim, err)
	}

	from := endOffsets(t, schemas.Orders.Name, schemas.Emails.Name)
	s := startShop(t, []string{"payment", "order", "email"}, "kt-1", 0)
	w := newWatch(t, from)

	// Four clients pay, about 40 payments a second, until stopped. A 503
	// is allowed (nothing charged), but counted.
	paid := newPaid()
	var refused atomic.Int64
	payCtx, stopPaying := context.WithCancel(ctx)
	var payers sync.WaitGroup
	for c := range 4 {
		payers.Add(1)
		go func() {
			defer payers.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for payCtx.Err() == nil {
				status, id, cents, err := postPayment(payCtx, s.URL("payment"), newPayment(rng))
				switch {
				case status == http.StatusOK:
					paid.add(id, cents)
				case status == http.StatusServiceUnavailable:
					refused.Add(1)
				case payCtx.Err() == nil:
					t.Errorf("payment: %v", err)
				}
				select {
				case <-payCtx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	defer func() {
		stopPaying()
		payers.Wait()
	}()

	time.Sleep(5 * time.Second)
	before := paid.len()
	if before == 0 {
		t.Fatal("no payment accepted in 5s")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	t.Logf("SIGKILL to broker %d (pid %d), the order service's transaction coordinator, after %d payments", victim, pid, before)
	t.Cleanup(func() {
		// Whatever happens, leave three brokers behind.
		if _, err := brokerPID(victim); err != nil {
			_ = exec.Command(filepath.Join(root, "scripts", "kafka-up")).Run()
		}
	})

	// On two brokers: payments keep being accepted, and every payment
	// accepted after the kill becomes an order and an email.
	eventually(t, 60*time.Second, func() error {
		if n := paid.len(); n < before+100 {
			return fmt.Errorf("%d payments accepted since the kill, want 100", n-before)
		}
		return nil
	})
	stopPaying()
	payers.Wait()
	onTwo := paid.snapshot()
	w.waitDrained(t, onTwo, 90*time.Second)
	if _, err := brokerPID(victim); err == nil {
		t.Fatalf("broker %d is back before the test restarted it", victim)
	}
	t.Logf("on two brokers: %d payments accepted (%d refused with 503), all with their order and email, %s after the kill",
		len(onTwo), refused.Load(), time.Since(killedAt).Round(100*time.Millisecond))

	// Restart the node as an operator would, and watch the ISR heal.
	up := exec.Command(filepath.Join(root, "scripts", "kafka-up"))
	up.Dir = root
	restartAt := time.Now()
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("scripts/kafka-up: %v\n%s", err, out)
	}
	waitISRFull(t, 120*time.Second)
	t.Logf("broker %d restarted and every ISR back to 3 in %s", victim, time.Since(restartAt).Round(100*time.Millisecond))

	// And on three brokers again, the same pipeline goes on.
	afterCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	rng := rand.New(rand.NewPCG(99, 7))
	for range 50 {
		status, id, cents, err := postPayment(afterCtx, s.URL("payment"), newPayment(rng))
		if status != http.StatusOK {
			t.Fatalf("payment after the restart: %v", errors.Join(err, afterCtx.Err()))
		}
		paid.add(id, cents)
	}
	all := paid.snapshot()
	w.waitDrained(t, all, 60*time.Second)

	tally := checkExactlyOnce(t, from, all)
	if tally.Orders != len(all) || tally.Emails != len(all) {
		t.Fatalf("%d payments, %d orders, %d emails", len(all), tally.Orders, tally.Emails)
	}
}
