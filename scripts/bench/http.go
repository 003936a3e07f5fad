package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/txn/metrics"
)

// payer posts payments to the payment service.
type payer struct {
	url    string
	client *http.Client
	bodies [][]byte
}

// paymentBodies are the bodies the payers post, 1,000 of them: a user of
// 10,000 and two cart lines each.
func paymentBodies() [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"MacBook", "AirPods", "Sneakers", "Coffee machine", "4K TV", "Headphones"}
	bodies := make([][]byte, 1000)
	for i := range bodies {
		body := map[string]any{
			"user_id": 1 + rng.IntN(10_000),
			"cart": []map[string]any{
				{"name": names[rng.IntN(len(names))], "price": json.Number(fmt.Sprintf("%d.%02d", 1+rng.IntN(2000), rng.IntN(100))), "quantity": 1 + rng.IntN(3)},
				{"name": names[rng.IntN(len(names))], "price": json.Number(fmt.Sprintf("%d.%02d", 1+rng.IntN(50), rng.IntN(100))), "quantity": 1},
			},
		}
		bodies[i], _ = json.Marshal(body)
	}
	return bodies
}

func newPayer(paymentURL string, conns int) *payer {
	return &payer{
		url: paymentURL + "/payment",
		client: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute},
		},
		bodies: paymentBodies(),
	}
}

// accepted is the part of a 200 answer the benchmarks use.
type accepted struct {
	PaymentID string `json:"payment_id"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// pay posts payment i (of the prepared bodies) and returns the HTTP status
// and, for a 200, the answer if want is set.
func (p *payer) pay(ctx context.Context, i int, want *accepted) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(p.bodies[i%len(p.bodies)]))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && want != nil {
		return resp.StatusCode, json.NewDecoder(resp.Body).Decode(want)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func (p *payer) close() { p.client.CloseIdleConnections() }

// producerCounts are the payment service's producer counters on /metrics:
// the records and batches it has produced to payment-successful.
func producerCounts(serviceURL string) (records, batches float64) {
	fams, err := metrics.Scrape(serviceURL + "/metrics")
	if err != nil {
		return 0, 0
	}
	of := map[string]string{"client": "producer", "topic": schemas.Payments.Name}
	records, _ = metrics.Sum(fams, "shop_kafka_produce_records_total", of)
	batches, _ = metrics.Sum(fams, "shop_kafka_produce_batches_total", of)
	return records, batches
}
