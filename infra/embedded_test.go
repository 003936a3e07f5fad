package infra_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/infra/access"
	"github.com/blackfriday-kafka/shop/infra/webserver/webservertest"
	"github.com/blackfriday-kafka/shop/schemas"
)

// The child of TestEmbeddedSurvivesSIGKILL: an embedded stack on a data
// directory that writes, commits, says so, and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("EMBEDDED_CHILD_DIR"); dir != "" {
		if err := child(dir); err != nil {
			fmt.Println("child:", err)
			os.Exit(1)
		}
		select {} // until SIGKILL
	}
	os.Exit(m.Run())
}

func child(dir string) error {
	ctx := context.Background()
	stack, err := infra.StartEmbedded(ctx, infra.EmbeddedConfig{DataDir: dir})
	if err != nil {
		return err
	}
	if err := write(ctx, stack); err != nil {
		return err
	}
	fmt.Println("written", stack.BrokerList())
	return nil
}

const records = 50

// write produces records acknowledged by every in-sync replica, in a
// transaction, and commits a group offset.
func write(ctx context.Context, stack *infra.Embedded) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...), kgo.TransactionalID("disk-test"),
		kgo.DefaultProduceTopic(schemas.Orders.Name))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		return err
	}
	for i := range records {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("7"), Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			return err
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return err
	}
	offsets := kadm.Offsets{}
	offsets.AddOffset(schemas.Orders.Name, 0, 17, -1)
	_, err = kadm.NewClient(cl).CommitOffsets(ctx, "disk-test-group", offsets)
	return err
}

// check finds what write wrote: the topics, the committed records, the
// group's offset, and the schemas with the same IDs.
func check(t *testing.T, stack *infra.Embedded, ids map[string]int) {
	t.Helper()
	ctx := context.Background()
	recs, err := infra.ReadTopic(ctx, stack.Brokers, schemas.Orders.Name, kgo.ReadCommitted(), 500*time.Millisecond)
	if err != nil || len(recs) != records {
		t.Fatalf("after the restart %d committed records (%v), want %d", len(recs), err, records)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fetched, err := kadm.NewClient(cl).FetchOffsets(ctx, "disk-test-group")
	if o, ok := fetched.Lookup(schemas.Orders.Name, 0); err != nil || !ok || o.At != 17 {
		t.Fatalf("after the restart the group's offset is %+v (%v), want 17", o, err)
	}
	cat, err := schemas.Connect(ctx, stack.RegistryURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range schemas.Topics() {
		if id := schemaID(t, cat, s); ids != nil && id != ids[s.Name] {
			t.Fatalf("%s: schema ID %d after the restart, %d before", s.Subject, id, ids[s.Name])
		}
	}
}

func schemaID(t *testing.T, cat *schemas.Catalog, s *schemas.Spec) int {
	t.Helper()
	switch s.Name {
	case schemas.Payments.Name:
		return schemas.Payments.Codec(cat).SchemaID()
	case schemas.Orders.Name:
		return schemas.Orders.Codec(cat).SchemaID()
	}
	return 0
}

// TestEmbeddedKeepsItsDataAcrossRestarts: make run's cluster, stopped and
// started on its data directory, has its topics, records, offsets and
// schemas back, with the same schema IDs.
func TestEmbeddedKeepsItsDataAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	stack, err := infra.StartEmbedded(ctx, infra.EmbeddedConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := write(ctx, stack); err != nil {
		t.Fatal(err)
	}
	cat, err := schemas.Connect(ctx, stack.RegistryURL)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, s := range schemas.Topics() {
		ids[s.Name] = schemaID(t, cat, s)
	}
	stack.Close()

	again, err := infra.StartEmbedded(ctx, infra.EmbeddedConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	check(t, again, ids)

	// The control: a stack on a fresh directory has none of it.
	fresh, err := infra.StartEmbedded(ctx, infra.EmbeddedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if recs, _ := infra.ReadTopic(ctx, fresh.Brokers, schemas.Orders.Name, kgo.ReadCommitted(), 300*time.Millisecond); len(recs) != 0 {
		t.Fatalf("a fresh directory holds %d records", len(recs))
	}
}

// TestEmbeddedSurvivesSIGKILL: a process killed with SIGKILL right after
// its writes were acknowledged loses none of them (kfake, like Kafka by
// default, writes through the page cache, which outlives the process).
func TestEmbeddedSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "EMBEDDED_CHILD_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "written") {
		cmd.Process.Kill()
		t.Fatalf("child: %q %v", line, err)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()

	again, err := infra.StartEmbedded(context.Background(), infra.EmbeddedConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	check(t, again, nil)
}

// TestRegistryIsBounded: the registry's server cuts a client whose schema
// trickles in, and refuses headers of a megabyte.
func TestRegistryIsBounded(t *testing.T) {
	stack, err := infra.StartEmbedded(context.Background(), infra.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Close()
	t.Run("headers", func(t *testing.T) { webservertest.RefusesHugeHeaders(t, stack.RegistryURL, "/subjects") })
	t.Run("trickle", func(t *testing.T) {
		webservertest.ClosesTrickle(t, stack.RegistryURL, "/subjects/orders-value/versions")
	})
}

// TestEmbeddedSecureOnOpenData: a secure stack on a data directory made
// open stops before it starts anything, with one line that names the
// directory and FRESH=1; the other way round works, and the directory
// made secure is secure again after it. The control: the same secure
// start on a fresh directory, and on the directory made secure, works.
func TestEmbeddedSecureOnOpenData(t *testing.T) {
	ctx := context.Background()
	secure := access.Stack(access.DevPassword)
	start := func(dir string, sec *infra.Secure) error {
		t.Helper()
		stack, err := infra.StartEmbedded(ctx, infra.EmbeddedConfig{DataDir: dir, Secure: sec, NoSchemas: true})
		if err == nil {
			stack.Close()
		}
		return err
	}

	open := t.TempDir()
	if err := start(open, nil); err != nil {
		t.Fatal(err)
	}
	err := start(open, secure)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), open) || !strings.Contains(err.Error(), "FRESH=1") {
		t.Fatalf("secure on data made open: %v; want one line naming %s and FRESH=1", err, open)
	}

	made := filepath.Join(t.TempDir(), "made-secure")
	for i, sec := range []*infra.Secure{secure, nil, secure} {
		if err := start(made, sec); err != nil {
			t.Fatalf("start %d (secure %v) on data made secure: %v", i, sec != nil, err)
		}
	}
}
