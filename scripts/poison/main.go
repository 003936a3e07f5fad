// Command poison sends poison pills to payment-successful and proves the shop
// survives them: each pill lands in dlq-payment with the right error_class, a
// valid payment sent after them still becomes an order and an email, and
// every service still answers /healthz.
//
//	go run ./scripts/poison [-timeout 60s]
//
// It talks to KAFKA_BROKERS, SCHEMA_REGISTRY_URL and the services on
// PAYMENT_URL, ORDER_URL, EMAIL_URL and ANALYTICS_URL (default
// http://localhost:8000 to 8003). The last line is
// "poison: K/K routed to DLQ, services healthy" when all went well.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/poison/pills"
	"github.com/blackfriday-kafka/shop/scripts/target"
)

// Target is where the shop runs: its cluster and registry (in secure mode
// as the admin), and its services.
type Target struct {
	target.Target
	ServiceURLs map[string]string // payment, order, email, analytics
}

func main() {
	timeout := flag.Duration("timeout", 60*time.Second, "how long to wait for dead letters, the order and the email")
	flag.Parse()
	target := Target{
		Target: target.FromEnv(),
		ServiceURLs: map[string]string{
			"payment":   env("PAYMENT_URL", "http://localhost:8000"),
			"order":     env("ORDER_URL", "http://localhost:8001"),
			"email":     env("EMAIL_URL", "http://localhost:8002"),
			"analytics": env("ANALYTICS_URL", "http://localhost:8003"),
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	summary, err := Run(ctx, target, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "poison:", err)
		os.Exit(1)
	}
	fmt.Println(summary)
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// sent is a pill on the log, waiting for its dead letter.
type sent struct {
	pill      pills.Pill
	partition int32
	offset    int64
	got       string // error_class of its dead letter, once found
}

// Run sends the pills and checks the outcome, writing progress to out. It
// returns the summary line, or an error naming every failure.
func Run(ctx context.Context, t Target, out io.Writer) (string, error) {
	reg, err := t.Registry()
	if err != nil {
		return "", err
	}
	cat, err := schemas.Resolved(ctx, reg)
	if err != nil {
		return "", fmt.Errorf("schema registry at %s: %w", t.RegistryURL, err)
	}
	all, err := pills.All(cat)
	if err != nil {
		return "", err
	}
	cl, err := kgo.NewClient(t.Kafka()...)
	if err != nil {
		return "", err
	}
	defer cl.Close()

	fmt.Fprintf(out, "sending %d poison pills to %s\n", len(all), schemas.Payments.Name)
	var pending []*sent
	for _, p := range all {
		r := &kgo.Record{Topic: schemas.Payments.Name, Key: []byte("poison"), Value: p.Value}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			return "", fmt.Errorf("send pill %q: %w", p.Name, err)
		}
		pending = append(pending, &sent{pill: p, partition: r.Partition, offset: r.Offset})
	}

	fmt.Fprintln(out, "sending a valid payment after them")
	paymentID, err := pay(ctx, t.ServiceURLs["payment"])
	if err != nil {
		return "", err
	}

	var problems []string
	if err := findDeadLetters(ctx, t.Kafka(), cat, pending); err != nil {
		problems = append(problems, err.Error())
	}
	routed := 0
	for _, s := range pending {
		status := "ok  "
		switch {
		case s.got == "":
			status = "LOST"
			problems = append(problems, fmt.Sprintf("pill %q (partition %d offset %d) never reached %s", s.pill.Name, s.partition, s.offset, schemas.PaymentDLQ.Name))
		case s.got != string(s.pill.Class):
			status = "BAD "
			problems = append(problems, fmt.Sprintf("pill %q: error_class %s, want %s", s.pill.Name, s.got, s.pill.Class))
		default:
			routed++
		}
		fmt.Fprintf(out, "  %s %-18s %s\n", status, s.pill.Class, s.pill.Name)
	}

	orderID := schemas.OrderID(paymentID)
	if err := findOnTopic(ctx, t.Kafka(), cat, schemas.Orders, func(o *schemas.OrderCreated) bool {
		return o.PaymentID == paymentID
	}); err != nil {
		problems = append(problems, fmt.Sprintf("valid payment %s has no order: %v", paymentID, err))
	} else {
		fmt.Fprintf(out, "  ok   valid payment %s became order %s\n", paymentID, orderID)
	}
	if err := findOnTopic(ctx, t.Kafka(), cat, schemas.Emails, func(e *schemas.EmailSent) bool {
		return e.OrderID == orderID
	}); err != nil {
		problems = append(problems, fmt.Sprintf("order %s has no email: %v", orderID, err))
	} else {
		fmt.Fprintf(out, "  ok   order %s got its email\n", orderID)
	}
	for _, name := range []string{"payment", "order", "email", "analytics"} {
		if err := healthy(ctx, t.ServiceURLs[name]); err != nil {
			problems = append(problems, fmt.Sprintf("%s service: %v", name, err))
		}
	}
	if len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "\n  "))
	}
	return fmt.Sprintf("poison: %d/%d routed to DLQ, services healthy", routed, len(all)), nil
}

// pay posts a valid payment and returns its ID.
func pay(ctx context.Context, paymentURL string) (string, error) {
	body := `{"user_id": 4242, "cart": [{"name": "Antidote", "price": 12.5, "quantity": 2}]}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, paymentURL+"/payment", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("payment service: %w", err)
	}
	defer resp.Body.Close()
	var answer struct {
		PaymentID string `json:"payment_id"`
		Error     string `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&answer); err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("valid payment refused: HTTP %d %s", resp.StatusCode, b)
	}
	return answer.PaymentID, nil
}

// findDeadLetters reads dlq-payment from the beginning until every pending
// pill has its dead letter, matched by source partition and offset.
func findDeadLetters(ctx context.Context, conn []kgo.Opt, cat *schemas.Catalog, pending []*sent) error {
	want := make(map[[2]int64]*sent, len(pending))
	for _, s := range pending {
		want[[2]int64{int64(s.partition), s.offset}] = s
	}
	left := len(want)
	return follow(ctx, conn, schemas.PaymentDLQ.Name, func(r *kgo.Record) bool {
		dl, err := schemas.PaymentDLQ.Codec(cat).Decode(ctx, r.Value)
		if err != nil || dl.SourceTopic != schemas.Payments.Name {
			return false
		}
		s, ok := want[[2]int64{int64(dl.SourcePartition), dl.SourceOffset}]
		if !ok || s.got != "" {
			return false
		}
		if !bytes.Equal(dl.OriginalValue, s.pill.Value) {
			s.got = "original bytes changed"
		} else {
			s.got = dl.ErrorClass
		}
		left--
		return left == 0
	})
}

// findOnTopic reads topic from the beginning until match says yes to a
// record's value.
func findOnTopic[V any](ctx context.Context, conn []kgo.Opt, cat *schemas.Catalog, topic schemas.Topic[V], match func(*V) bool) error {
	return follow(ctx, conn, topic.Name, func(r *kgo.Record) bool {
		v, err := topic.Codec(cat).Decode(ctx, r.Value)
		return err == nil && match(v)
	})
}

// follow reads topic with read_committed from the beginning and calls done
// for each record until it says true or ctx expires.
func follow(ctx context.Context, conn []kgo.Opt, topic string, done func(*kgo.Record) bool) error {
	cl, err := kgo.NewClient(append(conn, kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("gave up reading %s: %w", topic, ctx.Err())
		}
		for _, r := range fetches.Records() {
			if done(r) {
				return nil
			}
		}
	}
}

func healthy(ctx context.Context, url string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz answered %d", resp.StatusCode)
	}
	return nil
}
