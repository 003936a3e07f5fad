package view_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn/view"
)

// tally is a partition's state in the test: the records it folded, by
// topic.
type tally struct {
	mu  sync.Mutex
	Per map[string]int
}

func newTally() *tally { return &tally{Per: map[string]int{}} }

func (t *tally) Snapshot() ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return json.Marshal(t.Per)
}

func (t *tally) Restore(b []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return json.Unmarshal(b, &t.Per)
}

func (t *tally) count() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.Per)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Two members share the partitions by number, each holding p of both
// topics; when one leaves, the other takes its partitions from their
// checkpoints and goes on, and the tallies stay exact.
func TestPartitionedMovesPartitionsWithTheirCheckpoints(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "a", "b"), kfake.SeedTopics(1, "cps"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	w, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	written := map[int32]map[string]int{0: {}, 1: {}, 2: {}}
	write := func(n int) {
		var recs []*kgo.Record
		for i := range n {
			for _, topic := range []string{"a", "b"} {
				p := int32(i % 3)
				if topic == "b" {
					p = int32(i % 2) // b's partition 2 stays empty
				}
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte("x")})
				written[p][topic]++
			}
		}
		if err := w.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	logs := &lockedBuffer{}
	member := func(name string) (*view.Partitioned[*tally], context.CancelFunc, chan error) {
		cps, err := view.OpenCheckpoints(brokers, "cps", name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := view.FollowPartitioned(view.PartitionedConfig[*tally]{
			Brokers: brokers, Group: "tallies", Topics: []string{"a", "b"},
			Log:   slog.New(slog.NewJSONHandler(logs, nil)).With("member", name),
			Fresh: newTally, Address: func() string { return "http://" + name },
			Checkpoints: cps, Every: time.Hour, // only at hand-overs
		})
		if err != nil {
			t.Fatal(err)
		}
		mctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- v.Run(mctx, func(_ context.Context, s *tally, r *kgo.Record) error {
				s.mu.Lock()
				s.Per[r.Topic]++
				s.mu.Unlock()
				return nil
			})
		}()
		return v, stop, done
	}
	// exact waits until the members hold every partition number between
	// them, once each and each member some, with exactly what was written
	// to it.
	exact := func(members map[string]*view.Partitioned[*tally]) {
		t.Helper()
		var last error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			last = nil
			held := map[int32]string{}
			for name, v := range members {
				if len(v.Owned()) == 0 {
					last = fmt.Errorf("%s holds nothing", name)
				}
				for _, o := range v.Owned() {
					if other, ok := held[o.Partition]; ok {
						last = fmt.Errorf("partition %d held by %s and %s", o.Partition, other, name)
					}
					held[o.Partition] = name
					if got := o.State.count(); !maps.Equal(got, nonZero(written[o.Partition])) || !o.CaughtUp {
						last = fmt.Errorf("%s: partition %d tallies %v (caught up %v), want %v", name, o.Partition, got, o.CaughtUp, written[o.Partition])
					}
				}
			}
			if last == nil && len(held) != 3 {
				last = fmt.Errorf("partitions held: %v, want 0, 1 and 2", held)
			}
			if last == nil {
				return
			}
		}
		t.Fatal(last)
	}

	write(30)
	one, stopOne, doneOne := member("one")
	two, stopTwo, doneTwo := member("two")
	defer func() { stopTwo(); <-doneTwo }()
	exact(map[string]*view.Partitioned[*tally]{"one": one, "two": two})
	// The group says the same, with each member's address.
	owners, err := two.Owners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var numbers []int32
	for _, m := range owners {
		if m.Address != "http://one" && m.Address != "http://two" {
			t.Fatalf("member %+v advertises no address of ours", m)
		}
		numbers = append(numbers, m.Partitions...)
	}
	if slices.Sort(numbers); !slices.Equal(numbers, []int32{0, 1, 2}) {
		t.Fatalf("the group's members hold %v, want 0, 1 and 2 once each: %+v", numbers, owners)
	}

	write(30)
	stopOne()
	if err := <-doneOne; err != nil {
		t.Fatal(err)
	}
	write(30)
	exact(map[string]*view.Partitioned[*tally]{"two": two})
	if n := strings.Count(logs.String(), `"member":"two","partition":`); n == 0 ||
		!strings.Contains(logs.String(), `"msg":"partition taken","member":"two"`) ||
		!strings.Contains(logs.String(), `"from_checkpoint":true`) {
		t.Fatalf("two took no partition from one's checkpoint:\n%s", logs.String())
	}
}

func nonZero(m map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		if v > 0 {
			out[k] = v
		}
	}
	return out
}

// A member the group gives nothing (more members than partitions) is ready
// once it has joined: it answers by asking the others.
func TestPartitionedMemberWithNothingIsReady(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var members []*view.Partitioned[*tally]
	for range 2 {
		v, err := view.FollowPartitioned(view.PartitionedConfig[*tally]{
			Brokers: c.ListenAddrs(), Group: "few", Topics: []string{"a"},
			Log: slog.New(slog.DiscardHandler), Fresh: newTally,
		})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- v.Run(ctx, func(context.Context, *tally, *kgo.Record) error { return nil }) }()
		defer func() { cancel(); <-done }()
		members = append(members, v)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		held := len(members[0].Owned()) + len(members[1].Owned())
		owners, _ := members[0].Owners(ctx)
		if held == 1 && len(owners) == 2 && members[0].Ready() && members[1].Ready() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s: %d partitions held, %d members, ready %v and %v; want 1, 2, both ready",
				held, len(owners), members[0].Ready(), members[1].Ready())
		}
	}
}
