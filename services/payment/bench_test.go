package payment_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/blackfriday-kafka/shop/infra/webserver"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/payment"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
	"github.com/blackfriday-kafka/shop/txn/metrics"
)

// BenchmarkPay is POST /payment from 256 concurrent clients, each posting
// its next payment when the last is answered, against the payment service
// on the embedded cluster (in this process, as scripts/bench's ingest has
// it in its own), logging at info in JSON as deployed. For the profile of
// where a payment's time goes:
//
//	go test -run '^$' -bench Pay -benchtime 40000x -cpuprofile cpu.out -o payment.test ./services/payment/
//	go tool pprof -top -cum payment.test cpu.out
func BenchmarkPay(b *testing.B) {
	for _, clients := range []int{256} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchPay(b, clients) })
	}
}

func benchPay(b *testing.B, clients int) {
	env := shoptest.Start(b, shop.Options{Services: []string{"payment"}}, func(cfg *config.Config) {
		cfg.Logger = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	url := env.Shop.URL("payment") + "/payment"
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()
	bodies := make([][]byte, 1000)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, `{"user_id": %d, "cart": [{"name": "MacBook", "price": 1999.%02d, "quantity": %d}, {"name": "AirPods", "price": 279, "quantity": 1}]}`, 1+i*7%10_000, i%100, 1+i%3)
	}
	post := func(i int) error {
		resp, err := client.Post(url, "application/json", bytes.NewReader(bodies[i%len(bodies)]))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	for i := range clients { // connections open, the producer warm
		if err := post(i); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if post(i) != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "payments/s")
	b.ReportMetric(float64(failed.Load()), "refused")
	if fams, err := metrics.Scrape(env.Shop.URL("payment") + "/metrics"); err == nil {
		limit, _ := metrics.Sum(fams, "shop_payment_admission_limit", nil)
		b.ReportMetric(limit, "limit")
	}
}

// BenchmarkShed is POST /payment past the admission bound: the bound is
// one payment, held by a payment waiting for a Kafka that does not answer,
// and no queue, so that every request of the benchmark is refused at once.
// What a refusal costs the server, for the profile:
//
//	go test -run '^$' -bench Shed -benchtime 200000x -cpuprofile shed.out -o payment.test ./services/payment/
//	go tool pprof -top -cum -focus 'conn..serve' payment.test shed.out
func BenchmarkShed(b *testing.B) {
	_, cat := shoptest.Cluster(b) // for the registry only
	svc, err := payment.New(config.Config{Brokers: []string{"127.0.0.1:1"}, InstanceID: "1", StateDir: b.TempDir(),
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}, cat,
		payment.Options{DeliveryTimeout: time.Minute, Admission: payment.AdmissionOptions{Initial: 1, Min: 1, Max: 1, Queue: -1}})
	if err != nil {
		b.Fatal(err)
	}
	r := mux.NewRouter()
	svc.Routes(r)
	srv := httptest.NewUnstartedServer(r)
	srv.Config = webserver.New(r, slog.New(slog.DiscardHandler))
	srv.Start()
	defer srv.Close()
	defer srv.CloseClientConnections() // the held payment's too, first
	body := `{"user_id": 42, "cart": [{"name": "MacBook", "price": 1999, "quantity": 1}]}`
	go func() { // holds the one place until the server closes
		resp, err := http.Post(srv.URL+"/payment", "application/json", strings.NewReader(body))
		if err == nil {
			resp.Body.Close()
		}
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	for svc.Admission().InFlight() == 0 {
		time.Sleep(time.Millisecond)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(srv.URL+"/payment", "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				b.Errorf("status %d, want 503", resp.StatusCode)
				return
			}
		}
	})
}
