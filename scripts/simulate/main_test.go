package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// TestSimulate: every request is accounted for, accepted payments are on
// the topic one for one, and invalid ones are counted as 400s by field.
func TestSimulate(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"payment"}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	rep, err := Simulate(ctx, http.DefaultClient, Options{URL: env.Shop.URL("payment"), N: 300, C: 20, Invalid: 0.2,
		Progress: 10 * time.Millisecond}, &out)
	if err != nil {
		t.Fatal(err)
	}
	bad := rep.Failures["HTTP 400 Bad Request (cart[0].quantity)"]
	if rep.OK+bad != 300 || bad == 0 || rep.OK == 0 || len(rep.Failures) != 1 {
		t.Fatalf("report: %+v\n%s", rep.Failures, rep)
	}
	if len(rep.Latencies) != rep.OK || rep.Percentile(0.5) > rep.Percentile(0.99) || rep.Percentile(0.99) <= 0 {
		t.Fatalf("latencies: p50 %v p99 %v of %d", rep.Percentile(0.5), rep.Percentile(0.99), len(rep.Latencies))
	}
	if !strings.Contains(rep.String(), "payments accepted") || !strings.Contains(rep.String(), "p99=") {
		t.Fatalf("summary:\n%s", rep)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, schemas.Payments.Name)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != int64(rep.OK) {
		t.Fatalf("%d payments accepted, %d on %s", rep.OK, total, schemas.Payments.Name)
	}
}

// TestSimulateRetries: each payment posted three times with its key, two
// of the tries at once, is accepted once and written once; every other try
// is a replay or a 409 (its twin was still waiting for Kafka).
func TestSimulateRetries(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"payment"}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Simulate(ctx, http.DefaultClient, Options{URL: env.Shop.URL("payment"), N: 100, C: 10, Retries: 2}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a := rep.Answers
	if rep.OK != 100 || a["accepted"] != 100 || a["replayed"]+a["HTTP 409 Conflict (Idempotency-Key)"] != 200 || a["replayed"] < 100 {
		t.Fatalf("answers %v, %d accepted", a, rep.OK)
	}
	if !strings.Contains(rep.String(), "tries: HTTP 409 Conflict") && !strings.Contains(rep.String(), "tries: accepted=100") {
		t.Fatalf("summary:\n%s", rep)
	}
	_, adm := shoptest.Clients(t, env.Stack)
	ends, err := adm.ListEndOffsets(ctx, schemas.Payments.Name)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != 100 {
		t.Fatalf("%d payments written for 100 paid three times each", total)
	}
}

func TestSimulateCountsRefusedConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	rep, err := Simulate(context.Background(), http.DefaultClient, Options{URL: url, N: 10, C: 3}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK != 0 || rep.Failures["connection refused (is the payment service running?)"] != 10 {
		t.Fatalf("failures %v", rep.Failures)
	}
}

func TestSimulateIsBoundedInTime(t *testing.T) {
	srv := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Close()
	start := time.Now()
	rep, err := Simulate(context.Background(), http.DefaultClient, Options{URL: "http://" + ln.Addr().String(), N: 50, C: 5,
		Timeout: 300 * time.Millisecond}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 5*time.Second || rep.OK != 0 || rep.N != 50 {
		t.Fatalf("took %v: %+v", time.Since(start), rep.Failures)
	}
	if rep.Failures["not answered: time limit or interrupted"] != 5 || rep.Failures["not sent: time limit or interrupted"] != 45 {
		t.Fatalf("failures %v", rep.Failures)
	}
}

func TestCheckLoopback(t *testing.T) {
	for url, ok := range map[string]bool{
		"http://localhost:8000": true,
		"http://127.0.0.1:8000": true,
		"http://[::1]:8000":     true,
		"http://10.0.0.1:8000":  false,
		"http://192.0.2.1/":     false,
		"ftp://localhost/":      false,
		"localhost:8000":        false,
	} {
		if err := CheckLoopback(context.Background(), url); (err == nil) != ok {
			t.Errorf("CheckLoopback(%s) = %v", url, err)
		}
	}
}
