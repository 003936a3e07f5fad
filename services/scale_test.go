package services_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/shoppers"
	"github.com/blackfriday-kafka/shop/services/serve"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// analyticsAnswer is what the scale-out test reads of /analytics.
type analyticsAnswer struct {
	TotalPayments int64       `json:"total_payments"`
	TotalOrders   int64       `json:"total_orders"`
	TotalRevenue  json.Number `json:"total_revenue"` // euros, to the cent as written
	UniqueUsers   int64       `json:"unique_users"`
	Complete      bool        `json:"complete"`
	Partitions    int32       `json:"partitions"`
	Missing       []int32     `json:"missing_partitions"`
	Instances     []struct {
		Instance   string `json:"instance"`
		Partitions []struct {
			Partition int32 `json:"partition"`
		} `json:"partitions"`
	} `json:"instances"`
}

func (a analyticsAnswer) String() string {
	return fmt.Sprintf("%d payments, %d orders, revenue %v, %d users; complete %v, missing %v",
		a.TotalPayments, a.TotalOrders, a.TotalRevenue, a.UniqueUsers, a.Complete, a.Missing)
}

// covered lists the partitions the answer says it counted, each as often
// as an instance says it counted it.
func (a analyticsAnswer) covered() []int32 {
	var out []int32
	for _, in := range a.Instances {
		for _, p := range in.Partitions {
			out = append(out, p.Partition)
		}
	}
	slices.Sort(out)
	return out
}

// truth is the figures of order-created and payment-successful read with
// read_committed: what every complete answer must show once the flow stops.
type truth struct {
	payments, orders, users int64
	revenue                 string
}

func readTruth(t *testing.T, brokers []string, cat *schemas.Catalog) truth {
	t.Helper()
	var tr truth
	users := map[int64]bool{}
	for _, r := range readCommitted(t, brokers, schemas.Payments.Name) {
		p, err := schemas.Payments.Codec(cat).Decode(context.Background(), r.Value)
		if err != nil {
			t.Fatal(err)
		}
		tr.payments++
		users[p.UserID] = true
	}
	var cents int64
	for _, r := range readCommitted(t, brokers, schemas.Orders.Name) {
		o, err := schemas.Orders.Codec(cat).Decode(context.Background(), r.Value)
		if err != nil {
			t.Fatal(err)
		}
		tr.orders++
		cents += o.TotalCents
	}
	tr.users, tr.revenue = int64(len(users)), schemas.Euros(cents).String()
	return tr
}

// TestAnalyticsScalesOutExactThroughAKill runs three analytics instances
// as processes in analytics-service-group while payments flow, kills one
// with SIGKILL and starts another: every answer of every instance is
// either complete or names the partitions it lacks, a complete one never
// counts a payment twice, and once the group has settled every instance
// shows exactly the totals of the topics.
func TestAnalyticsScalesOutExactThroughAKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills real processes")
	}
	stack, cat := shoptest.Cluster(t)
	bin := shopBin(t)
	cfg := shoptest.Config(t, stack)
	shoptest.Services(t, cfg, cat, shop.Options{Services: []string{"order"}})

	type instance struct {
		id, url string
		cmd     *exec.Cmd
	}
	start := func(id string) *instance {
		port, err := serve.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "analytics")
		cmd.Env = append(os.Environ(),
			"KAFKA_BROKERS="+stack.BrokerList(), "SCHEMA_REGISTRY_URL="+stack.RegistryURL,
			"PORT="+strconv.Itoa(port), "INSTANCE_ID="+id, "CHECKPOINT_EVERY=2s", "LOG_LEVEL=warn",
			"PAYMENT_URLS=http://127.0.0.1:1") // no payment service here: the edge panel stays empty
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		in := &instance{id: id, url: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd}
		eventually(t, 60*time.Second, func() error {
			resp, err := http.Get(in.url + "/readyz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("analytics %s: /readyz %d", id, resp.StatusCode)
			}
			return nil
		})
		return in
	}
	ask := func(url string) (analyticsAnswer, error) {
		var a analyticsAnswer
		resp, err := http.Get(url + "/analytics")
		if err != nil {
			return a, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return a, fmt.Errorf("GET %s/analytics: %d", url, resp.StatusCode)
		}
		dec := json.NewDecoder(resp.Body)
		dec.UseNumber()
		return a, dec.Decode(&a)
	}

	cl, _ := shoptest.Clients(t, stack)
	r := rand.New(rand.NewPCG(25, 25))
	var mu sync.Mutex
	produced, producedUsers := int64(0), map[int64]bool{}
	pay := func(n int) {
		t.Helper()
		recs := make([]*kgo.Record, n)
		mu.Lock()
		for i := range recs {
			p := shoppers.Payment(r, 5000)
			rec, err := schemas.Payments.Codec(cat).Record(&p)
			if err != nil {
				t.Fatal(err)
			}
			recs[i] = rec
			producedUsers[p.UserID] = true
		}
		produced += int64(n) // before they are written: an answer counts no more than this
		mu.Unlock()
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	live := map[string]*instance{}
	for _, id := range []string{"1", "2", "3"} {
		live[id] = start(id)
	}

	// The watcher: every answer of every live instance, all along.
	var (
		wmu        sync.Mutex
		violations []string
		partial    int // answers that named missing partitions
		answers    int
	)
	watch := func(ctx context.Context) {
		for ctx.Err() == nil {
			wmu.Lock()
			urls := []string{}
			for _, in := range live {
				urls = append(urls, in.url)
			}
			wmu.Unlock()
			for _, url := range urls {
				a, err := ask(url)
				if err != nil {
					continue // an instance being killed does not answer
				}
				// Read after the answer: it cannot have counted more.
				mu.Lock()
				after, users := produced, int64(len(producedUsers))
				mu.Unlock()
				wmu.Lock()
				answers++
				switch {
				case a.Partitions != 3:
					violations = append(violations, fmt.Sprintf("%s: %d partitions, want 3: %v", url, a.Partitions, a))
				case !a.Complete && len(a.Missing) == 0:
					violations = append(violations, fmt.Sprintf("%s: incomplete without naming what is missing: %v", url, a))
				case !a.Complete:
					partial++
					if got := len(a.covered()) + len(a.Missing); got != 3 {
						violations = append(violations, fmt.Sprintf("%s: covers %v and misses %v", url, a.covered(), a.Missing))
					}
				case !slices.Equal(a.covered(), []int32{0, 1, 2}):
					violations = append(violations, fmt.Sprintf("%s: complete, but counted partitions %v", url, a.covered()))
				case a.TotalPayments > after || a.UniqueUsers > users:
					violations = append(violations, fmt.Sprintf("%s: complete, %v, more than the %d payments (%d users) written", url, a, after, users))
				}
				wmu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { watch(ctx); close(watched) }()
	defer func() { stop(); <-watched }()

	// settled waits until every live instance shows the topics' totals,
	// completely, with the group's three partitions each held by one.
	settled := func(within time.Duration) {
		t.Helper()
		var tr truth
		shoptest.Eventually(t, within, 500*time.Millisecond, func() error {
			tr = readTruth(t, stack.Brokers, cat)
			if tr.orders != tr.payments {
				return fmt.Errorf("%d orders of %d payments yet", tr.orders, tr.payments)
			}
			wmu.Lock()
			ins := []*instance{}
			for _, in := range live {
				ins = append(ins, in)
			}
			wmu.Unlock()
			for _, in := range ins {
				a, err := ask(in.url)
				if err != nil {
					return err
				}
				if !a.Complete || a.TotalPayments != tr.payments || a.TotalOrders != tr.orders ||
					a.TotalRevenue.String() != tr.revenue || a.UniqueUsers != tr.users {
					return fmt.Errorf("analytics %s: %v; the topics: %d payments, %d orders, revenue %s, %d users",
						in.id, a, tr.payments, tr.orders, tr.revenue, tr.users)
				}
			}
			return nil
		})
	}

	// Three instances, one partition number each.
	pay(600)
	settled(60 * time.Second)
	holders := map[int32]string{}
	for id, in := range live {
		var held struct {
			Partitions []struct {
				Partition int32 `json:"partition"`
			} `json:"partitions"`
		}
		get(t, in.url+"/analytics/partitions", &held)
		if len(held.Partitions) != 1 {
			t.Fatalf("analytics %s holds %d partitions, want 1 of 3 instances' 3", id, len(held.Partitions))
		}
		p := held.Partitions[0].Partition
		if other, taken := holders[p]; taken {
			t.Fatalf("partition %d held by analytics %s and %s", p, other, id)
		}
		holders[p] = id
	}

	// SIGKILL one, with payments flowing: the survivors name its
	// partition as missing until the group gives it to one of them.
	pay(300)
	victim := live["3"]
	var lost int32
	for p, id := range holders {
		if id == "3" {
			lost = p
		}
	}
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = victim.cmd.Wait() // gone: its port is closed
	wmu.Lock()
	delete(live, "3")
	wmu.Unlock()
	a, err := ask(live["1"].url) // before the group notices: the holder does not answer
	if err != nil {
		t.Fatal(err)
	}
	if a.Complete || !slices.Contains(a.Missing, lost) {
		t.Fatalf("right after the kill of the holder of partition %d, analytics 1 answers %v; want that partition named missing", lost, a)
	}
	pay(300)
	settled(60 * time.Second)
	t.Logf("the survivors showed the exact totals %v after the kill", time.Since(killed).Round(100*time.Millisecond))

	// A new instance joins: the partitions are dealt again, and every
	// instance, the newcomer too, shows the exact totals.
	newcomer := start("4")
	wmu.Lock()
	live["4"] = newcomer
	wmu.Unlock()
	pay(300)
	settled(60 * time.Second)

	stop()
	<-watched
	wmu.Lock()
	defer wmu.Unlock()
	if len(violations) > 0 {
		t.Fatalf("%d of %d answers broke the contract, first ones:\n%v", len(violations), answers, violations[:min(5, len(violations))])
	}
	if partial == 0 {
		t.Fatalf("none of %d answers named a missing partition, not even through a kill: the watch saw nothing", answers)
	}
	t.Logf("%d answers watched, %d of them naming missing partitions", answers, partial)
}
