package main

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
	"github.com/blackfriday-kafka/shop/txn/lag"
)

// TestConsumerGroupScaling measures the tutorial's part 4 on the embedded
// cluster: with PROCESSING_DELAY=100ms one order instance drains about 10
// payments/s, three about 30, and when one of three stops its partition
// moves to the others. It takes about a minute and depends on the
// machine's speed, so it runs only when asked:
//
//	SHOP_SCALING=1 go test ./scripts/lag -run Scaling -v
func TestConsumerGroupScaling(t *testing.T) {
	if os.Getenv("SHOP_SCALING") != "1" {
		t.Skip("set SHOP_SCALING=1 to measure consumer-group scaling (about a minute)")
	}
	one := drainRate(t, 1, 0)
	three := drainRate(t, 3, 3)
	t.Logf("order-service-group with PROCESSING_DELAY=100ms: 1 instance %.1f payments/s, 3 instances %.1f payments/s (x%.2f)", one, three, three/one)
	if one < 7 || one > 11 || three < 2.4*one {
		t.Errorf("1 instance %.1f/s, 3 instances %.1f/s: want about 10 and about 30", one, three)
	}
}

// drainRate floods a fresh cluster with a backlog, starts n order instances
// with a 100 ms delay per payment and measures how fast the group commits.
// If stop > 0, instance stop then leaves and the rate of the rest is
// measured too.
func drainRate(t *testing.T, n, stop int) float64 {
	stack, cat := shoptest.Cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl, adm := shoptest.Clients(t, stack)

	// A backlog that lasts: 40 s of work for three instances.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1500 {
		p := schemas.PaymentSucceeded{PaymentID: uuid.NewString(), UserID: 1 + rng.Int64N(1000),
			Cart: []schemas.CartItem{{Name: "Kindle", UnitPriceCents: 8999, Quantity: 1}}, TotalCents: 8999, PaidAt: time.Now()}
		rec, err := schemas.Payments.Codec(cat).Record(&p)
		if err != nil {
			t.Fatal(err)
		}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	instances := make([]*shop.Shop, n)
	for i := range n {
		id := strconv.Itoa(i + 1)
		cfg := shoptest.Config(t, stack)
		cfg.InstanceID, cfg.ProcessingDelay = id, 100*time.Millisecond
		s, err := shop.Start(ctx, cfg, cat, shop.Options{Services: []string{"order"}})
		if err != nil {
			t.Fatal(err)
		}
		instances[i] = s
		t.Cleanup(func() { s.Stop() })
	}
	group := schemas.Group("order")

	// Wait until every instance holds a partition and the group commits.
	var first lag.Report
	for {
		rep, err := lag.Collect(ctx, adm, group)
		if err != nil {
			t.Fatal(err)
		}
		g := rep.Groups[0]
		if g.State == "Stable" && len(g.Members) == n && g.Committed() > 0 {
			first = rep
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("group never settled: %+v", g)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let every instance reach its pace
	rate := measure(t, ctx, adm, group, 15*time.Second)
	for _, m := range first.Groups[0].Members {
		t.Logf("%d instance(s): %s holds %v", n, m.Name, m.Assigned)
	}
	t.Logf("%d instance(s): %.1f payments/s", n, rate)

	if stop > 0 {
		if err := instances[stop-1].Stop(); err != nil {
			t.Fatal(err)
		}
		for {
			rep, err := lag.Collect(ctx, adm, group)
			if err != nil {
				t.Fatal(err)
			}
			g := rep.Groups[0]
			held := 0
			for _, m := range g.Members {
				held += len(m.Assigned[schemas.Payments.Name])
			}
			if g.State == "Stable" && len(g.Members) == n-1 && held == 3 {
				for _, m := range g.Members {
					t.Logf("after instance %d stopped: %s holds %v", stop, m.Name, m.Assigned)
				}
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("partitions never moved: %+v", g)
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
		t.Logf("after instance %d stopped: %.1f payments/s with %d instances", stop, measure(t, ctx, adm, group, 10*time.Second), n-1)
	}
	return rate
}

// measure is the group's committed records per second over window.
func measure(t *testing.T, ctx context.Context, adm *kadm.Client, group string, window time.Duration) float64 {
	t.Helper()
	before, err := lag.Collect(ctx, adm, group)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(window)
	after, err := lag.Collect(ctx, adm, group)
	if err != nil {
		t.Fatal(err)
	}
	if after.Groups[0].Lag() == 0 {
		t.Fatalf("the backlog ran out during the measure: make it larger")
	}
	return float64(after.Groups[0].Committed()-before.Groups[0].Committed()) / after.At.Sub(before.At).Seconds()
}
