package access_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/blackfriday-kafka/shop/infra/access"
	"github.com/blackfriday-kafka/shop/infra/access/accesstest"
	"github.com/blackfriday-kafka/shop/schemas"
)

// secure is a one-broker cluster with the table's users and ACLs, and the
// shop's topics.
func secure(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(append(access.Embedded(access.DevPassword), kfake.NumBrokers(1))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	adm := kadm.NewClient(client(t, c.ListenAddrs(), access.Admin))
	topics := schemas.TopicNames()
	for _, s := range schemas.StateTopics() {
		topics = append(topics, s.Name)
	}
	if _, err := adm.CreateTopics(context.Background(), 1, 1, nil, topics...); err != nil {
		t.Fatal(err)
	}
	return c.ListenAddrs()
}

// client is a client of principal (none: no credentials).
func client(t *testing.T, brokers []string, principal string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.RequestRetries(0), kgo.RetryTimeout(2 * time.Second)}, opts...)
	if principal != "" {
		opts = append(opts, kgo.SASL(scram.Auth{User: principal, Pass: access.DevPassword(principal)}.AsSha512Mechanism()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produce(t *testing.T, cl *kgo.Client, topic string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("7"), Value: []byte("x")}).FirstErr()
}

// Each principal may do its job, and nothing more.
func TestPrincipalsDoTheirJobOnly(t *testing.T) {
	brokers := secure(t)
	ctx := context.Background()
	dial := func(t *testing.T, principal string, opts ...kgo.Opt) *kgo.Client {
		return client(t, brokers, principal, opts...)
	}

	t.Run("a client without credentials is refused", func(t *testing.T) { accesstest.RefusesStrangers(t, dial) })
	t.Run("a wrong password is refused", func(t *testing.T) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.SASL(scram.Auth{User: "payment", Pass: "guess"}.AsSha512Mechanism()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := cl.Ping(pctx); err == nil {
			t.Fatal("a wrong password reached the cluster")
		}
	})
	t.Run("payment writes payments, idempotently", func(t *testing.T) {
		if err := produce(t, client(t, brokers, "payment"), schemas.Payments.Name); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("payment cannot write an order", func(t *testing.T) {
		accesstest.RefusesForgedOrder(t, dial)
		ends, _ := kadm.NewClient(client(t, brokers, access.Admin)).ListEndOffsets(ctx, schemas.Orders.Name)
		if o, _ := ends.Lookup(schemas.Orders.Name, 0); o.Offset != 0 {
			t.Fatalf("order-created ends at %d: something landed", o.Offset)
		}
	})
	t.Run("order writes orders in its transactions", func(t *testing.T) {
		cl := client(t, brokers, "order", kgo.TransactionalID("order-service-1"))
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := produce(t, cl, schemas.Orders.Name); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("email cannot take the order service's transactional ID", func(t *testing.T) {
		accesstest.RefusesStolenTransactionalID(t, dial, "order-service-1")
	})
	t.Run("email cannot join the order service's group", func(t *testing.T) { accesstest.RefusesForeignGroup(t, dial) })
	t.Run("analytics only reads", func(t *testing.T) {
		if err := produce(t, client(t, brokers, "analytics"), schemas.Payments.Name); !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("analytics writing a payment: %v, want TOPIC_AUTHORIZATION_FAILED", err)
		}
	})
}

// TestApplyCreatesTheTable: Apply, as shop acls runs it on a real cluster,
// leaves on the brokers exactly one ACL per principal, resource and
// operation of the table, however often it runs; the embedded cluster
// seeded with the same table holds the same ACLs.
func TestApplyCreatesTheTable(t *testing.T) {
	want := 0
	for _, p := range access.Principals() {
		for _, g := range access.Table[p] {
			want += len(g.Ops)
		}
	}
	count := func(adm *kadm.Client) int {
		t.Helper()
		results, err := adm.DescribeACLs(context.Background(), kadm.NewACLs().AnyResource().Allow().AllowHosts().Operations(kadm.OpAny).ResourcePatternType(kadm.ACLPatternAny))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range results {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			n += len(r.Described)
		}
		return n
	}
	// A cluster with ACLs on and only the admin: Apply creates them.
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser(access.Mechanism, access.Admin, access.DevPassword(access.Admin)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	adm := kadm.NewClient(client(t, c.ListenAddrs(), access.Admin))
	if n := count(adm); n != 0 {
		t.Fatalf("%d ACLs before Apply", n)
	}
	for range 2 {
		if err := access.Apply(context.Background(), adm); err != nil {
			t.Fatal(err)
		}
		if n := count(adm); n != want {
			t.Fatalf("%d ACLs after Apply, want %d (one per operation of the table)", n, want)
		}
	}
	if n := count(kadm.NewClient(client(t, secure(t), access.Admin))); n != want {
		t.Fatalf("the embedded cluster holds %d ACLs, want %d", n, want)
	}
}
