package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/infra/access"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

func TestTopics(t *testing.T) {
	stack, _ := shoptest.Cluster(t)
	_, adm := shoptest.Clients(t, stack)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := func(f func(*bytes.Buffer) error) string {
		t.Helper()
		var out bytes.Buffer
		if err := f(&out); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		return out.String()
	}

	// The embedded stack created the shop's topics: create is a no-op.
	out := run(func(b *bytes.Buffer) error { return Create(ctx, adm, stack.Brokers, nil, NewTopics{}, b) })
	if !strings.Contains(out, "already there: "+strings.Join(schemas.TopicNames(), ", ")) || strings.Contains(out, "created:") {
		t.Fatalf("create on a ready cluster:\n%s", out)
	}

	out = run(func(b *bytes.Buffer) error {
		return Create(ctx, adm, stack.Brokers, []string{"test"}, NewTopics{Partitions: 2, Replicas: 1}, b)
	})
	if !strings.Contains(out, "created: test") {
		t.Fatalf("create test:\n%s", out)
	}
	out = run(func(b *bytes.Buffer) error { return List(ctx, adm, false, b) })
	for _, want := range []string{"\npayment-successful 3 3\n", "\ntest 2 1\n"} {
		if !strings.Contains(squeeze(out), want) {
			t.Fatalf("list lacks %q:\n%s", want, out)
		}
	}

	// describe agrees with the cluster's metadata, partition by partition.
	out = run(func(b *bytes.Buffer) error { return Describe(ctx, adm, nil, false, b) })
	topics, err := adm.ListTopics(ctx, schemas.TopicNames()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range schemas.TopicNames() {
		if !strings.Contains(out, topic+"  partitions=3 replicas=3") {
			t.Fatalf("describe lacks %s:\n%s", topic, out)
		}
		for _, p := range topics[topic].Partitions.Sorted() {
			row := fmt.Sprintf("%d %d %s %s - ", p.Partition, p.Leader, ids(p.Replicas), ids(p.ISR))
			if !strings.Contains(section(out, topic), row) {
				t.Fatalf("describe lacks %q:\n%s", row, out)
			}
		}
	}
	if strings.Count(out, "configs: min.insync.replicas=2") != len(schemas.TopicNames()) {
		t.Fatalf("describe does not show min.insync.replicas=2 on every topic:\n%s", out)
	}
	if err := Describe(ctx, adm, []string{"nope"}, false, &bytes.Buffer{}); err == nil {
		t.Fatal("describe of a missing topic succeeded")
	}

	out = run(func(b *bytes.Buffer) error { return Delete(ctx, adm, []string{"test"}, b) })
	if out != "deleted: test\n" {
		t.Fatalf("delete: %q", out)
	}
	if err := Delete(ctx, adm, nil, &bytes.Buffer{}); err == nil {
		t.Fatal("delete without names succeeded")
	}
	// As a new run of the tool would: a fresh client, without the
	// metadata this one cached.
	fresh, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for {
		out = run(func(b *bytes.Buffer) error { return List(ctx, kadm.NewClient(fresh), false, b) })
		if !strings.Contains(out, "\ntest ") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("test still listed:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// squeeze turns the runs of spaces tabwriter aligns with into one.
func squeeze(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n")
}

// section is the part of describe's output about topic, squeezed.
func section(out, topic string) string {
	for _, s := range strings.Split(out, "\n\n") {
		if strings.HasPrefix(s, topic+" ") {
			return squeeze(s)
		}
	}
	return ""
}

// TestCreateSecure: on a cluster with SASL and ACLs, the admin's client
// creates the shop's topics (they are there already: nothing changes), and
// a client without credentials is refused.
func TestCreateSecure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sec := access.Stack(access.DevPassword)
	stack, err := infra.StartEmbedded(ctx, infra.EmbeddedConfig{Secure: sec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	client := func(opts ...kgo.Opt) *kadm.Client {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(stack.Brokers...)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return kadm.NewClient(cl)
	}
	var out bytes.Buffer
	if err := Create(ctx, client(sec.Admin...), stack.Brokers, nil, NewTopics{}, &out); err != nil {
		t.Fatalf("create as admin: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "already there: ") {
		t.Fatalf("create as admin:\n%s", out.String())
	}
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	if err := Create(short, client(), stack.Brokers, nil, NewTopics{}, &bytes.Buffer{}); err == nil {
		t.Fatal("create without credentials: no error")
	}
}
