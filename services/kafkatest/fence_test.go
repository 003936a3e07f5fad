//go:build kafka

package kafkatest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/blackfriday-kafka/shop/schemas"
)

// consumedBy is the sum of the offsets a group committed on
// payment-successful past from.
func consumedBy(ctx context.Context, adm *kadm.Client, service string, from Offsets) int64 {
	offsets, err := adm.FetchOffsets(ctx, schemas.Group(service))
	if err != nil {
		return 0
	}
	var sum int64
	offsets.Each(func(o kadm.OffsetResponse) {
		if o.Topic == schemas.Payments.Name {
			sum += max(0, o.At-from[o.Topic][o.Partition])
		}
	})
	return sum
}

// TestSameInstanceIDFencesTheOlder starts a second order process with the
// INSTANCE_ID, and so the transactional ID, of one already at work. The
// broker fences the older: it must exit with a fenced error and never commit
// again, while the newer takes over, with no order doubled or lost.
func TestSameInstanceIDFencesTheOlder(t *testing.T) {
	waitISRFull(t, 60*time.Second)
	adm := admin(t)
	ctx := context.Background()
	from, outputs, w := streamStart(t)

	// Email keeps the chain whole; the order processes are the subject.
	startShop(t, []string{"email"}, "kt-1", 0)
	const instance = "INSTANCE_ID=kt-fence"
	older := startProcess(t, "order", instance, "PROCESSING_DELAY=2ms")

	// 1,500 payments over 15 s; the older works on them for a while.
	paid := newPaid()
	sent := make(chan error, 1)
	go func() { sent <- produceStream(ctx, t, paid, 1500, 15*time.Second, 11) }()
	eventually(t, 60*time.Second, func() error {
		if n := consumedBy(ctx, adm, "order", from); n < 200 {
			return fmt.Errorf("the first order process committed %d payments", n)
		}
		return nil
	})

	newer := startProcess(t, "order", instance, "PROCESSING_DELAY=2ms")
	startedAt := time.Now()
	select {
	case <-older.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the older order process still runs 60s after a newer one took its transactional ID; its log:\n%s", older.stderr)
	}
	log := older.stderr.String()
	if older.err == nil || !strings.Contains(log, "fenced") {
		t.Fatalf("the older order process exited with %v, want a fenced error; its log:\n%s", older.err, log)
	}
	t.Logf("the older order process exited %s after the newer started: %v, %q",
		time.Since(startedAt).Round(100*time.Millisecond), older.err, lastLine(log))

	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	all := paid.snapshot()
	w.waitDrained(t, all, 90*time.Second)
	select {
	case <-newer.exited:
		t.Fatalf("the newer order process stopped: %v\n%s", newer.err, newer.stderr)
	default:
	}
	if err := newer.stop(20 * time.Second); err != nil {
		t.Fatalf("the newer order process after SIGTERM: %v, want exit status 0\n%s", err, newer.stderr)
	}
	tally := checkExactlyOnce(t, outputs, all)
	if tally.Orders != len(all) {
		t.Fatalf("%d payments, %d orders", len(all), tally.Orders)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
