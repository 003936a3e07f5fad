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
	"github.com/blackfriday-kafka/shop/txn/lag"
)

var topic = schemas.Payments.Name

// agree checks that Collect's figures are kadm.Lag's: same partitions,
// committed offsets, high watermarks, HWM lag and members.
func agree(t *testing.T, ctx context.Context, adm *kadm.Client, rep lag.Report, groups ...string) {
	t.Helper()
	lags, err := adm.Lag(ctx, groups...)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range rep.Groups {
		want := lags[g.Group]
		if err := want.Error(); err != nil || g.Err != "" {
			t.Fatalf("%s: kadm %v, lag %v", g.Group, err, g.Err)
		}
		if g.State != want.State || len(g.Members) != len(want.Members) {
			t.Fatalf("%s: state %s members %d; kadm %s %d", g.Group, g.State, len(g.Members), want.State, len(want.Members))
		}
		if len(g.Partitions) != len(want.Lag.Sorted()) {
			t.Fatalf("%s: %d partitions, kadm %d", g.Group, len(g.Partitions), len(want.Lag.Sorted()))
		}
		var total int64
		for _, p := range g.Partitions {
			k, ok := want.Lag.Lookup(p.Topic, p.Partition)
			if !ok {
				t.Fatalf("%s %s/%d: not in kadm's lag", g.Group, p.Topic, p.Partition)
			}
			member := ""
			switch {
			case k.Member == nil:
			case k.Member.InstanceID != nil && *k.Member.InstanceID != "":
				member = *k.Member.InstanceID
			default:
				member = k.Member.ClientID
			}
			if p.Committed != k.Commit.At || p.HWM != k.End.Offset || p.LagHWM != k.Lag || p.Member != member {
				t.Fatalf("%s %s/%d: committed %d hwm %d lag %d member %q; kadm %d %d %d %q", g.Group, p.Topic, p.Partition,
					p.Committed, p.HWM, p.LagHWM, p.Member, k.Commit.At, k.End.Offset, k.Lag, member)
			}
			total += p.LagHWM
		}
		if total != want.Lag.Total() {
			t.Fatalf("%s: total %d, kadm %d", g.Group, total, want.Lag.Total())
		}
	}
}

func TestLagAgreesWithKadm(t *testing.T) {
	stack, _ := shoptest.Cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, adm := shoptest.Clients(t, stack)
	for i := range 60 {
		r := &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: []byte("x")}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// An empty group that committed by hand (as a tool may) ...
	if err := adm.CommitAllOffsets(ctx, "by-hand", kadm.Offsets{topic: {
		0: {Topic: topic, Partition: 0, At: 3},
		2: {Topic: topic, Partition: 2, At: 1},
	}}); err != nil {
		t.Fatal(err)
	}
	// ... and a live member that read 25 records.
	member, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...), kgo.ConsumerGroup("live"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.ClientID("live-reader"))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	read := 0
	for read < 25 {
		recs := member.PollRecords(ctx, 25-read).Records()
		if ctx.Err() != nil {
			t.Fatal(ctx.Err())
		}
		if err := member.CommitRecords(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		read += len(recs)
	}

	rep, err := lag.Collect(ctx, adm)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Groups) != 2 || rep.Groups[0].Group != "by-hand" || rep.Groups[1].Group != "live" {
		t.Fatalf("groups %+v", rep.Groups)
	}
	agree(t, ctx, adm, rep, "by-hand", "live")
	byHand, live := rep.Groups[0], rep.Groups[1]
	if byHand.State != "Empty" || byHand.Lag() != 60-4 {
		t.Fatalf("by-hand: state %s lag %d, want Empty 56", byHand.State, byHand.Lag())
	}
	if live.State != "Stable" || live.Lag() != 60-25 || live.Committed() != 25 || live.Members[0].Name != "live-reader" ||
		len(live.Members[0].Assigned[topic]) != 3 {
		t.Fatalf("live: state %s lag %d committed %d members %+v", live.State, live.Lag(), live.Committed(), live.Members)
	}
	for _, p := range rep.Groups[1].Partitions {
		if p.Lag != p.LagHWM || p.LSO != p.HWM {
			t.Fatalf("no transaction open, yet LSO %d != HWM %d on %d", p.LSO, p.HWM, p.Partition)
		}
	}

	// A transaction left open: its records are past the LSO. kadm counts
	// them as lag; a read_committed consumer cannot reach them yet.
	txn, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...), kgo.TransactionalID("lag-test"), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := txn.ProduceSync(ctx, &kgo.Record{Key: []byte("open"), Value: []byte("y")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	open, err := lag.Collect(ctx, adm, "live")
	if err != nil {
		t.Fatal(err)
	}
	agree(t, ctx, adm, open, "live")
	var hwmLag, lsoLag int64
	for _, p := range open.Groups[0].Partitions {
		hwmLag += p.LagHWM
		lsoLag += p.Lag
	}
	if lsoLag != 35 || hwmLag != 40 {
		t.Fatalf("with a transaction open: LSO lag %d, HWM lag %d; want 35 and 40", lsoLag, hwmLag)
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	later := open
	later.At = open.At.Add(2 * time.Second)
	Print(&out, later, &rep)
	for _, want := range []string{"live  state=Stable members=1 lag=35 consumed=0.0/s", "member live-reader (member live-reader-", "payment-successful[0 1 2]",
		"TOPIC", "COMMITTED", "LSO", "HWM", "LAG"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
}
