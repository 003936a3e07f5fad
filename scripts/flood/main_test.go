package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// TestFloodWritesExactlyN: flood -n N leaves exactly N records on
// payment-successful, each a valid payment keyed by its user.
func TestFloodWritesExactlyN(t *testing.T) {
	const n = 2000
	stack, cat := shoptest.Cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	var out bytes.Buffer
	res, err := Flood(ctx, cl, schemas.Payments.Codec(cat), Options{N: n, Progress: time.Millisecond}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != n || res.Rate() <= 0 || !strings.Contains(res.String(), "flood: 2000 payments written to payment-successful in ") {
		t.Fatalf("result %+v: %s", res, res)
	}

	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, schemas.Payments.Name)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != n {
		t.Fatalf("payment-successful holds %d records, want %d", total, n)
	}

	read, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...), kgo.ConsumeTopics(schemas.Payments.Name),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer read.Close()
	ids := map[string]bool{}
	for len(ids) < n && ctx.Err() == nil {
		for _, r := range read.PollFetches(ctx).Records() {
			p, err := schemas.Payments.Codec(cat).Decode(ctx, r.Value)
			if err != nil {
				t.Fatalf("offset %d: %v", r.Offset, err)
			}
			if fe := schemas.ValidatePayment(p); fe != nil {
				t.Fatalf("invalid payment %+v: %v", p, fe)
			}
			if string(r.Key) != strconv.FormatInt(p.UserID, 10) {
				t.Fatalf("payment of user %d keyed %q", p.UserID, r.Key)
			}
			ids[p.PaymentID] = true
		}
	}
	if len(ids) != n {
		t.Fatalf("read %d distinct payments, want %d", len(ids), n)
	}
	if !strings.Contains(out.String(), "acknowledged") {
		t.Fatalf("no progress printed:\n%s", out.String())
	}
}

func TestFloodRefusesNothingToDo(t *testing.T) {
	if _, err := Flood(context.Background(), nil, nil, Options{N: 0}, &bytes.Buffer{}); err == nil {
		t.Fatal("flood -n 0 succeeded")
	}
}
