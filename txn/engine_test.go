package txn_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/txn"
)

const (
	in  = "numbers"
	out = "doubled"
	dlq = "dead"
)

// cluster starts a 3-broker fake cluster with the test's topics.
func cluster(t *testing.T, partitions int32) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(partitions, in, out, dlq))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// produce writes the numbers 0..n-1 to the input topic, keyed by n mod 7.
func produce(t *testing.T, brokers []string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: in, Key: []byte(strconv.Itoa(i % 7)), Value: []byte(strconv.Itoa(i))}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// double is the transform under test: "21" becomes "42" on the output topic.
func double(_ context.Context, r *kgo.Record) ([]*kgo.Record, error) {
	n, err := strconv.Atoi(string(r.Value))
	if err != nil {
		return nil, err
	}
	return []*kgo.Record{{Topic: out, Key: r.Key, Value: []byte(strconv.Itoa(2 * n))}}, nil
}

func config(brokers []string, id string, h txn.Handler) txn.Config {
	return txn.Config{
		Brokers:         brokers,
		Group:           "doublers",
		Topic:           in,
		TransactionalID: "doubler-" + id,
		Handler:         h,
		MaxRecords:      50,
		MinBackoff:      10 * time.Millisecond,
		MaxBackoff:      50 * time.Millisecond,
		SessionTimeout:  6 * time.Second,
	}
}

// start runs an engine until the test ends. The channel gets Run's result.
func start(t *testing.T, cfg txn.Config) (*txn.Engine, <-chan error) {
	t.Helper()
	e, err := txn.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		result <- e.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
	})
	return e, result
}

// waitCommitted waits until the group has committed every input offset.
func waitCommitted(t *testing.T, brokers []string) {
	t.Helper()
	waitCommittedWhile(t, brokers, nil)
}

// waitCommittedWhile is waitCommitted that fails at once if an engine
// stops first, with its result on stopped.
func waitCommittedWhile(t *testing.T, brokers []string, stopped <-chan error) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		ends, err := adm.ListEndOffsets(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		committed, err := adm.FetchOffsets(ctx, "doublers")
		if err == nil {
			done := true
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := committed.Lookup(in, o.Partition)
				if !ok || c.At < o.Offset {
					done = false
				}
			})
			if done {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("group never committed the whole input: %v", ends)
		case err := <-stopped:
			t.Fatalf("the engine stopped before the group committed the whole input: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readAll reads a topic from the start until it has been idle for a second.
func readAll(t *testing.T, brokers []string, topic string, isolation kgo.IsolationLevel) []*kgo.Record {
	t.Helper()
	recs, err := infra.ReadTopic(context.Background(), brokers, topic, isolation, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// values counts each output value.
func values(recs []*kgo.Record) map[string]int {
	m := make(map[string]int)
	for _, r := range recs {
		m[string(r.Value)]++
	}
	return m
}

// exactlyDoubled checks that out holds 2*i once for each i in 0..n-1 not
// listed in except, and nothing else.
func exactlyDoubled(t *testing.T, recs []*kgo.Record, n int, except ...int) {
	t.Helper()
	skip := map[int]bool{}
	for _, e := range except {
		skip[e] = true
	}
	got := values(recs)
	want := n - len(except)
	if len(recs) != want {
		t.Errorf("output holds %d records, want %d", len(recs), want)
	}
	for i := 0; i < n; i++ {
		v := strconv.Itoa(2 * i)
		switch c := got[v]; {
		case skip[i] && c != 0:
			t.Errorf("record %d should have been dead-lettered, output has it %d times", i, c)
		case !skip[i] && c != 1:
			t.Errorf("record %d is on the output %d times, want once", i, c)
		}
	}
}

// stopsFenced waits for who's engine, whose Run result comes on done, to
// stop with ErrFenced within 30s of when.
func stopsFenced(t *testing.T, done <-chan error, who, when string) {
	t.Helper()
	select {
	case err := <-done:
		if !errors.Is(err, txn.ErrFenced) {
			t.Fatalf("%s stopped with %v, want ErrFenced", who, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still runs 30s %s", who, when)
	}
}

func TestCommitsEveryRecordOnce(t *testing.T) {
	brokers := cluster(t, 3)
	produce(t, brokers, 500)
	e, _ := start(t, config(brokers, "1", double))
	waitCommitted(t, brokers)
	exactlyDoubled(t, readAll(t, brokers, out, kgo.ReadCommitted()), 500)
	st := e.Stats()
	if st.Records != 500 || st.Produced != 500 || st.Committed == 0 {
		t.Fatalf("stats = %+v, want 500 records and produced, some commits", st)
	}
}

func TestAbortsAndRetriesWithoutSkipping(t *testing.T) {
	brokers := cluster(t, 1)
	produce(t, brokers, 100)
	// Record 37 fails twice, as if a downstream system were briefly down.
	var failures atomic.Int32
	flaky := func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		if string(r.Value) == "37" && failures.Add(1) <= 2 {
			return nil, errors.New("inventory service timed out")
		}
		return double(ctx, r)
	}
	e, _ := start(t, config(brokers, "1", flaky))
	waitCommitted(t, brokers)

	committed := readAll(t, brokers, out, kgo.ReadCommitted())
	exactlyDoubled(t, committed, 100)
	// In order: the retry did not skip ahead of record 37.
	for i, r := range committed {
		if want := strconv.Itoa(2 * i); string(r.Value) != want {
			t.Fatalf("output[%d] = %s, want %s: order broken by the retry", i, r.Value, want)
		}
	}
	if st := e.Stats(); st.Aborted < 2 {
		t.Fatalf("aborted = %d, want at least the two failures", st.Aborted)
	}
}

// TestRestartedInstanceFencesTheOldOne is a crash mid-batch: instance A is
// stuck in the middle of a transaction when its replacement, with the same
// transactional ID, starts. The replacement fences A, A's open transaction is
// aborted, and the output holds every record exactly once, with no gap.
func TestRestartedInstanceFencesTheOldOne(t *testing.T) {
	brokers := cluster(t, 3)
	produce(t, brokers, 300)

	stuck := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	var seen atomic.Int32
	hangs := func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		if seen.Add(1) == 120 { // mid-stream, mid-batch
			once.Do(func() { close(stuck) })
			<-release
		}
		return double(ctx, r)
	}
	_, doneA := start(t, config(brokers, "1", hangs))
	select {
	case <-stuck:
	case <-time.After(30 * time.Second):
		t.Fatal("instance A never reached record 120")
	}

	// The restart: once it has committed a transaction it has fenced A,
	// whose open transaction the broker aborted.
	b, _ := start(t, config(brokers, "1", double))
	deadline := time.Now().Add(30 * time.Second)
	for b.Stats().Committed == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the restarted instance never committed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(release) // A wakes up and tries to go on with its batch

	stopsFenced(t, doneA, "the old instance", "after being fenced")
	waitCommitted(t, brokers)
	exactlyDoubled(t, readAll(t, brokers, out, kgo.ReadCommitted()), 300)
}

// TestTimedOutTransactionIsNotAFence: a transaction that outlives its
// timeout, as when its coordinator's broker dies and the next one takes over
// later than that, is aborted by the coordinator, which bumps the producer
// epoch. Kafka then refuses the commit with PRODUCER_FENCED, as it would for
// a newer instance with the same transactional ID. There is none here: the
// engine must start a new producer and process the records again, not stop
// as TestRestartedInstanceFencesTheOldOne's older instance must.
func TestTimedOutTransactionIsNotAFence(t *testing.T) {
	brokers := cluster(t, 1)
	produce(t, brokers, 120)

	// The last record holds its transaction past the timeout, after the
	// batch's first outputs reached the brokers, and yields nothing the
	// first time: what fails is the commit, which the coordinator refuses.
	var stuck atomic.Bool
	slow := func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		if string(r.Value) == "119" && stuck.CompareAndSwap(false, true) {
			time.Sleep(3 * time.Second)
			return nil, nil
		}
		return double(ctx, r)
	}
	cfg := config(brokers, "1", slow)
	cfg.TransactionTimeout = time.Second
	cfg.InstanceID = "doubler-1" // the group says no newer instance took over
	e, done := start(t, cfg)
	waitCommittedWhile(t, brokers, done)
	if st := e.Stats(); st.Renewals != 1 {
		t.Fatalf("the engine replaced its client %d times, want once (after the timed-out commit)", st.Renewals)
	}
	exactlyDoubled(t, readAll(t, brokers, out, kgo.ReadCommitted()), 120)
}

// TestNewerInstanceFencesAStuckOneAfterTheTimeout: an instance stuck for
// longer than its transaction timeout, while a newer one with the same
// transactional ID and instance ID took over, meets the same refusal as
// TestTimedOutTransactionIsNotAFence. The group tells them apart: it gave
// the instance to the newer member, so the stuck one must stop, and not
// start a new producer that would fence the newer one in turn.
func TestNewerInstanceFencesAStuckOneAfterTheTimeout(t *testing.T) {
	brokers := cluster(t, 1)
	produce(t, brokers, 120)

	stuck, release := make(chan struct{}), make(chan struct{})
	var held atomic.Bool
	hangs := func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		if string(r.Value) == "119" && held.CompareAndSwap(false, true) {
			close(stuck)
			<-release
			return nil, nil
		}
		return double(ctx, r)
	}
	cfg := config(brokers, "1", hangs)
	cfg.TransactionTimeout = time.Second
	cfg.InstanceID = "doubler-1"
	_, doneOlder := start(t, cfg)
	select {
	case <-stuck:
	case <-time.After(30 * time.Second):
		t.Fatal("the first instance never reached the last record")
	}
	began := time.Now()
	// The stuck transaction's first outputs reach the log before the
	// newer instance fences it: what it meets then is the refused commit.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got := values(readAll(t, brokers, out, kgo.ReadUncommitted()))
		if got["200"] > 0 && got["236"] > 0 { // 2×100 and 2×118
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stuck transaction's outputs never reached the log")
		}
	}

	newerCfg := cfg
	newerCfg.Handler = double
	_, doneNewer := start(t, newerCfg)
	waitCommittedWhile(t, brokers, doneNewer)
	time.Sleep(time.Until(began.Add(2 * cfg.TransactionTimeout))) // past the stuck one's timeout
	close(release)

	stopsFenced(t, doneOlder, "the stuck instance", "after it woke up")
	produce(t, brokers, 0)
	select {
	case err := <-doneNewer:
		t.Fatalf("the newer instance stopped: %v", err)
	default:
	}
	exactlyDoubled(t, readAll(t, brokers, out, kgo.ReadCommitted()), 120)
}

func TestConfigRequiresTheEssentials(t *testing.T) {
	for name, cfg := range map[string]txn.Config{
		"no brokers":          {Group: "g", Topic: "t", TransactionalID: "x", Handler: double},
		"no transactional ID": {Brokers: []string{"b"}, Group: "g", Topic: "t", Handler: double},
		"no handler":          {Brokers: []string{"b"}, Group: "g", Topic: "t", TransactionalID: "x"},
	} {
		if _, err := txn.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestGracefulStopHandsPartitionsOverAtOnce: static members do not leave the
// group when their client closes, so the engine leaves explicitly; the other
// instance must get the partitions long before the session timeout.
func TestGracefulStopHandsPartitionsOverAtOnce(t *testing.T) {
	brokers := cluster(t, 3)
	a := config(brokers, "a", double)
	a.InstanceID, a.SessionTimeout = "doubler-a", time.Minute
	b := config(brokers, "b", double)
	b.InstanceID, b.SessionTimeout = "doubler-b", time.Minute

	ea, err := txn.New(a)
	if err != nil {
		t.Fatal(err)
	}
	ctxA, stopA := context.WithCancel(context.Background())
	doneA := make(chan error, 1)
	go func() { doneA <- ea.Run(ctxA) }()
	start(t, b)

	produce(t, brokers, 100)
	waitCommitted(t, brokers)
	stopA()
	if err := <-doneA; err != nil {
		t.Fatalf("graceful stop: %v", err)
	}

	stopped := time.Now()
	produce(t, brokers, 100) // keys 0..6 spread over all three partitions
	waitCommitted(t, brokers)
	if took := time.Since(stopped); took > 30*time.Second {
		t.Fatalf("the remaining instance took %v to take over, the session timeout is a minute", took)
	}
	recs := readAll(t, brokers, out, kgo.ReadCommitted())
	if len(recs) != 200 {
		t.Fatalf("output holds %d records, want 200", len(recs))
	}
}

// TestUnconfirmedCommitIsNeitherRepeatedNorLost is a coordinator that
// commits a transaction but answers only after the engine stopped waiting,
// as when it dies right after writing the commit: the engine cannot know
// whether the commit happened. It must abort what its client still holds
// (or it could never begin again), go on, and read again from what the group
// committed, so that the records of the unconfirmed commit are neither
// processed twice nor skipped.
func TestUnconfirmedCommitIsNeitherRepeatedNorLost(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, in, out, dlq))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	produce(t, brokers, 300)

	// The first commit after the 50th record is held for 1.5 s, longer
	// than the engine waits, then carried out; nothing else runs on the
	// coordinator before it.
	var seen atomic.Int32
	var held, pending atomic.Bool
	c.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if req.(*kmsg.EndTxnRequest).Commit && seen.Load() > 50 && !held.Swap(true) {
			pending.Store(true)
			c.SleepControl(func() { time.Sleep(1500 * time.Millisecond) })
			pending.Store(false)
		}
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if pending.Load() {
			c.SleepControl(func() {
				for pending.Load() {
					time.Sleep(10 * time.Millisecond)
				}
				time.Sleep(100 * time.Millisecond)
			})
		}
		return nil, nil, false
	})
	counting := func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		seen.Add(1)
		return double(ctx, r)
	}
	cfg := config(brokers, "1", counting)
	cfg.EndTimeout = time.Second
	// State kept per partition is restored again after the unconfirmed
	// commit: it may or may not hold that transaction's outputs.
	var restores, drops atomic.Int32
	cfg.OnAssigned = func(context.Context, []int32) { restores.Add(1) }
	cfg.OnRevoked = func([]int32) { drops.Add(1) }
	e, done := start(t, cfg)
	waitCommitted(t, brokers)
	select {
	case err := <-done:
		t.Fatalf("engine stopped: %v", err)
	default:
	}
	if !held.Load() {
		t.Fatal("no commit was held")
	}
	if st := e.Stats(); st.Aborted == 0 {
		t.Fatalf("stats = %+v: the held commit should count as not committed", st)
	}
	if r, d := restores.Load(), drops.Load(); r < 2 || d < 1 {
		t.Fatalf("partition state restored %d times and dropped %d: want a restore after the unconfirmed commit too", r, d)
	}
	exactlyDoubled(t, readAll(t, brokers, out, kgo.ReadCommitted()), 300)
}

// TestIdleInstanceStopsWhenItsInstanceIDIsTaken: an instance with nothing to
// do never touches its transactional ID, so only the group can tell it that
// a newer instance took its instance ID. It must stop with ErrFenced rather
// than try to join again forever, and must not take the newer instance out
// of the group on its way out.
func TestIdleInstanceStopsWhenItsInstanceIDIsTaken(t *testing.T) {
	brokers := cluster(t, 3)
	cfg := config(brokers, "1", double)
	cfg.InstanceID = "doubler-1"
	older, doneOlder := start(t, cfg)
	for deadline := time.Now().Add(30 * time.Second); !older.Ready(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first instance never polled")
		}
	}
	time.Sleep(time.Second) // joined and idle

	newer, doneNewer := start(t, cfg)
	stopsFenced(t, doneOlder, "the older instance", "after a newer one took its instance ID")

	produce(t, brokers, 100)
	waitCommitted(t, brokers)
	exactlyDoubled(t, readAll(t, brokers, out, kgo.ReadCommitted()), 100)
	select {
	case err := <-doneNewer:
		t.Fatalf("the newer instance stopped: %v", err)
	default:
	}
	if st := newer.Stats(); st.Records != 100 {
		t.Fatalf("the newer instance committed %d records, want all 100", st.Records)
	}
}

// TestRefusedOutputsAreHandedBack: Kafka refuses for good an output too
// large for any batch. The engine must not retry that forever: it hands the
// refusal to the handler on the retry, and what the handler returns instead
// commits, with everything around it.
func TestRefusedOutputsAreHandedBack(t *testing.T) {
	brokers := cluster(t, 1)
	produce(t, brokers, 30)
	var refusals atomic.Int32
	h := func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		if string(r.Value) != "17" {
			return double(ctx, r)
		}
		if err := txn.Refused(ctx); err != nil {
			refusals.Add(1)
			return []*kgo.Record{{Topic: dlq, Key: r.Key, Value: []byte("refused: " + err.Error())}}, nil
		}
		return []*kgo.Record{{Topic: out, Key: r.Key, Value: make([]byte, 2<<20)}}, nil // over the 1 MB batch limit
	}
	e, _ := start(t, config(brokers, "1", h))
	waitCommitted(t, brokers)
	exactlyDoubled(t, readAll(t, brokers, out, kgo.ReadCommitted()), 30, 17)
	dead := readAll(t, brokers, dlq, kgo.ReadCommitted())
	if len(dead) != 1 || !strings.Contains(string(dead[0].Value), "MESSAGE_TOO_LARGE") {
		t.Fatalf("instead of the refused output: %d records, want one naming MESSAGE_TOO_LARGE", len(dead))
	}
	if refusals.Load() != 1 || e.Stats().Aborted < 1 {
		t.Fatalf("refusals handed back = %d, aborts = %d; want 1 and at least 1", refusals.Load(), e.Stats().Aborted)
	}
}

// TestStallIsReported: a record that keeps failing stops its partition. The
// engine says so once it has retried longer than StallAfter, naming the
// partition and the record, and stops saying so once it commits again.
func TestStallIsReported(t *testing.T) {
	brokers := cluster(t, 1)
	produce(t, brokers, 10)
	var healed atomic.Bool
	h := func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		if string(r.Value) == "4" && !healed.Load() {
			return nil, errors.New("inventory service down")
		}
		return double(ctx, r)
	}
	cfg := config(brokers, "1", h)
	cfg.MaxRecords = 1 // records 0 to 3 commit before the stall
	cfg.StallAfter = 300 * time.Millisecond
	e, _ := start(t, cfg)

	var stall txn.Stall
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var ok bool
		if stall, ok = e.Stalled(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the engine never reported the stall")
		}
	}
	if stall.Topic != in || stall.Partition != 0 || stall.Offset != 4 || !strings.Contains(stall.Reason, "inventory service down") ||
		time.Since(stall.Since) < cfg.StallAfter {
		t.Fatalf("stall = %+v, want partition 0, offset 4, the reason, and since at least %v", stall, cfg.StallAfter)
	}

	healed.Store(true)
	waitCommitted(t, brokers)
	if s, ok := e.Stalled(); ok {
		t.Fatalf("still stalled after committing: %v", s)
	}
	exactlyDoubled(t, readAll(t, brokers, out, kgo.ReadCommitted()), 10)
}
