package services_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
	"github.com/blackfriday-kafka/shop/txn/deadletter"
)

// TestHugePillDoesNotStopThePartition: a payment of 999,805 bytes that does
// not decode fits a record batch, but its dead letter with the whole value
// would not. The dead letter keeps a prefix and says so, and the valid
// payment behind the pill, on the same partition, becomes an order.
func TestHugePillDoesNotStopThePartition(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"order"}}, nil)
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	pill := bytes.Repeat([]byte("x"), 999_805) // not the Confluent wire format
	p := schemas.PaymentSucceeded{PaymentID: "2d3c5a54-64f7-4a71-9a2b-6c50e4e2a9d1", UserID: 42,
		Cart: []schemas.CartItem{{Name: "MacBook", UnitPriceCents: 199900, Quantity: 1}}, TotalCents: 199900,
		PaidAt: time.Now().UTC().Truncate(time.Millisecond)}
	valid, err := schemas.Payments.Codec(env.Catalog).Record(&p)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: schemas.Payments.Name, Key: []byte("42"), Value: pill}, valid).FirstErr(); err != nil {
		t.Fatal(err)
	}

	eventually(t, 15*time.Second, func() error {
		orders, err := infra.ReadTopic(ctx, env.Stack.Brokers, schemas.Orders.Name, kgo.ReadCommitted(), 200*time.Millisecond)
		if err != nil {
			return err
		}
		if len(orders) != 1 {
			return fmt.Errorf("%d orders on %s, want the valid payment's", len(orders), schemas.Orders.Name)
		}
		return nil
	})
	dead, err := infra.ReadTopic(ctx, env.Stack.Brokers, schemas.PaymentDLQ.Name, kgo.ReadCommitted(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want the pill's", len(dead))
	}
	dl, err := schemas.PaymentDLQ.Codec(env.Catalog).Decode(ctx, dead[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pill)
	if dl.ErrorClass != string(schemas.BadMagicByte) || !dl.Truncated || *dl.OriginalSize != int64(len(pill)) ||
		*dl.OriginalSHA256 != hex.EncodeToString(sum[:]) || !bytes.HasPrefix(pill, dl.OriginalValue) ||
		deadletter.Header(dead[0], deadletter.HeaderTruncated) != "true" {
		t.Fatalf("dead letter: class %s, truncated %v, %d bytes kept: want the pill cut and marked", dl.ErrorClass, dl.Truncated, len(dl.OriginalValue))
	}
}
