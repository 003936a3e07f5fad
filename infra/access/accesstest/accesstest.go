// Package accesstest holds a secure cluster to the access table with the
// same checks wherever it runs: the embedded brokers, SECURE=1 make run,
// and Kafka's own StandardAuthorizer under SECURE=1 make kafka-up. Each
// check fails its test with what the cluster answered instead.
package accesstest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
)

// Dial is a client of the cluster as principal, with opts; "" is a client
// without credentials. It closes the client when the test ends.
type Dial func(t *testing.T, principal string, opts ...kgo.Opt) *kgo.Client

// RefusesStrangers: a client without credentials does not get in.
func RefusesStrangers(t *testing.T, dial Dial) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dial(t, "").Ping(ctx); err == nil {
		t.Fatal("a client without credentials reached the brokers")
	}
}

// RefusesForgedOrder: the payment principal cannot write order-created.
// What landed, if anything, the caller checks its own way.
func RefusesForgedOrder(t *testing.T, dial Dial) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := dial(t, "payment").ProduceSync(ctx, &kgo.Record{Topic: schemas.Orders.Name, Key: []byte("1"), Value: []byte("forged")}).FirstErr()
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("payment writing order-created: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
}

// RefusesStolenTransactionalID: the email principal cannot take txnID, an
// ID of the order service's.
func RefusesStolenTransactionalID(t *testing.T, dial Dial, txnID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := dial(t, "email", kgo.TransactionalID(txnID))
	err := cl.BeginTransaction() // initialises the producer ID
	if err == nil {
		err = cl.ProduceSync(ctx, &kgo.Record{Topic: schemas.Emails.Name, Value: []byte("x")}).FirstErr()
	}
	if !errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
		t.Fatalf("email with %s: %v, want TRANSACTIONAL_ID_AUTHORIZATION_FAILED", txnID, err)
	}
}

// RefusesForeignGroup: the email principal cannot join the order
// service's group.
func RefusesForeignGroup(t *testing.T, dial Dial) {
	t.Helper()
	cl := dial(t, "email", kgo.ConsumerGroup("order-service-group"), kgo.ConsumeTopics(schemas.Orders.Name))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var got error
	for got == nil && ctx.Err() == nil {
		cl.PollFetches(ctx).EachError(func(_ string, _ int32, err error) { got = err })
	}
	if !errors.Is(got, kerr.GroupAuthorizationFailed) {
		t.Fatalf("email joining order-service-group: %v, want GROUP_AUTHORIZATION_FAILED", got)
	}
}

// RegistryRefusesStrangers: a schema registered without credentials gets
// 401 from the registry at url.
func RegistryRefusesStrangers(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Post(url+"/subjects/forged-value/versions", "application/vnd.schemaregistry.v1+json",
		strings.NewReader(`{"schema": "\"string\""}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST %s/subjects/forged-value/versions without credentials: %d, want 401", url, resp.StatusCode)
	}
}
