package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/metrics"
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

// leanPayer is a payer for the ingest section's closed loop that costs
// this process little CPU, as wrk does for a web server: each client has
// one kept-alive HTTP/1.1 connection of its own, writes a prepared request
// in one write and reads the answer with a buffered reader, where
// net/http's client spends two goroutines, channels and a few allocations
// per request. On the 2 cores the load shares with the shop, what the load
// generator does not take, the services get. No pipelining: a client sends
// its next payment only once the last is answered.
type leanPayer struct {
	addr     string   // host:port
	requests [][]byte // the whole request for each body
}

func newLeanPayer(paymentURL string) (*leanPayer, error) {
	u, err := url.Parse(paymentURL)
	if err != nil {
		return nil, err
	}
	p := &leanPayer{addr: u.Host}
	for _, body := range paymentBodies() {
		req := fmt.Appendf(nil, "POST /payment HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", u.Host, len(body))
		p.requests = append(p.requests, append(req, body...))
	}
	return p, nil
}

// leanConn is one client's connection; it dials again after an error.
type leanConn struct {
	p    *leanPayer
	conn net.Conn
	rd   *bufio.Reader
}

func (p *leanPayer) conn() *leanConn { return &leanConn{p: p} }

func (c *leanConn) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// pay posts payment i and returns the HTTP status of the answer.
func (c *leanConn) pay(ctx context.Context, i int) (int, error) {
	if c.conn == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", c.p.addr)
		if err != nil {
			return 0, err
		}
		c.conn = conn
		if c.rd == nil {
			c.rd = bufio.NewReaderSize(conn, 4096)
		} else {
			c.rd.Reset(conn)
		}
	}
	_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	status, err := c.roundTrip(c.p.requests[i%len(c.p.requests)])
	if err != nil {
		c.close()
	}
	return status, err
}

func (c *leanConn) roundTrip(req []byte) (int, error) {
	if _, err := c.conn.Write(req); err != nil {
		return 0, err
	}
	line, err := c.rd.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, fmt.Errorf("not an HTTP answer: %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("status line %q", line)
	}
	length, closing := -1, false
	for {
		line, err := c.rd.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		h := bytes.TrimRight(line, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, _ := bytes.Cut(h, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return 0, fmt.Errorf("Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			closing = true
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, fmt.Errorf("answer with Transfer-Encoding %q: not read here", value)
		}
	}
	if length < 0 {
		return 0, errors.New("answer without Content-Length")
	}
	if _, err := c.rd.Discard(length); err != nil {
		return 0, err
	}
	if closing {
		c.close()
	}
	return status, nil
}

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
