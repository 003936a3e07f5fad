package txn_test

import (
	"context"
	"errors"
	"strconv"
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
		return nil, poison{err}
	}
	return []*kgo.Record{{Topic: out, Key: r.Key, Value: []byte(strconv.Itoa(2 * n))}}, nil
}

type poison struct{ error }

func (poison) ErrorClass() string { return "validation" }

func deadLetter(r *kgo.Record, class string, reason error) (*kgo.Record, error) {
	return &kgo.Record{Topic: dlq, Key: r.Key, Value: r.Value, Headers: []kgo.RecordHeader{{Key: "error.class", Value: []byte(class)}}}, nil
}

func config(brokers []string, id string, h txn.Handler) txn.Config {
	return txn.Config{
		Brokers:         brokers,
		Group:           "doublers",
		Topic:           in,
		TransactionalID: "doubler-" + id,
		Handler:         h,
		DeadLetter:      deadLetter,
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

func TestCommitsEveryRecordOnce(t *testing.T) {
	brokers := cluster(t, 3)
	produce(t, brokers, 500)
	e, _ := start(t, config(brokers, "1", double))
	waitCommitted(t, brokers)
	exactlyDoubled(t, readAll(t, brokers, out, kgo.ReadCommitted()), 500)
	st := e.Stats()
	if st.Records != 500 || st.Produced != 500 || st.Committed == 0 || st.DeadLettered != 0 {
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

func TestPoisonGoesToTheDeadLetterQueueInTheSameTransaction(t *testing.T) {
	brokers := cluster(t, 1)
	cl, _ := kgo.NewClient(kgo.SeedBrokers(brokers...))
	var recs []*kgo.Record
	for i := 0; i < 20; i++ {
		v := strconv.Itoa(i)
		if i == 5 || i == 12 {
			v = "not a number"
		}
		recs = append(recs, &kgo.Record{Topic: in, Value: []byte(v)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()

	// Record 15 fails once, but only after the dead letter of record 12
	// is on the log yet invisible to read_committed: it is inside the
	// open transaction, which then aborts and takes it away.
	var failed atomic.Bool
	var inOpenTxn atomic.Bool
	h := func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		if string(r.Value) == "15" && !failed.Swap(true) {
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
				if len(readAll(t, brokers, dlq, kgo.ReadUncommitted())) > len(readAll(t, brokers, dlq, kgo.ReadCommitted())) {
					inOpenTxn.Store(true)
					break
				}
			}
			return nil, errors.New("transient")
		}
		return double(ctx, r)
	}
	e, _ := start(t, config(brokers, "1", h))
	waitCommitted(t, brokers)

	exactlyDoubled(t, readAll(t, brokers, out, kgo.ReadCommitted()), 20, 5, 12)
	dead := readAll(t, brokers, dlq, kgo.ReadCommitted())
	if len(dead) != 2 || dead[0].Offset == dead[1].Offset || string(dead[0].Value) != "not a number" {
		t.Fatalf("dead letters = %d, want the two poison records once each", len(dead))
	}
	for _, d := range dead {
		if len(d.Headers) != 1 || string(d.Headers[0].Value) != "validation" {
			t.Fatalf("dead letter headers = %v", d.Headers)
		}
	}
	if st := e.Stats(); st.DeadLettered != 2 || st.DeadLettersByClass["validation"] != 2 || st.Records != 20 {
		t.Fatalf("stats = %+v, want 20 records of which 2 dead-lettered", st)
	}
	if !inOpenTxn.Load() {
		t.Fatal("no dead letter was ever pending in an open transaction")
	}
	if all := readAll(t, brokers, dlq, kgo.ReadUncommitted()); len(all) <= len(dead) {
		t.Fatalf("read_uncommitted sees %d dead letters, read_committed %d: the aborted one is missing", len(all), len(dead))
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

	select {
	case err := <-doneA:
		if !errors.Is(err, txn.ErrFenced) {
			t.Fatalf("old instance stopped with %v, want ErrFenced", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("old instance went on after being fenced")
	}
	waitCommitted(t, brokers)
	exactlyDoubled(t, readAll(t, brokers, out, kgo.ReadCommitted()), 300)
}

func TestConfigRequiresTheEssentials(t *testing.T) {
	for name, cfg := range map[string]txn.Config{
		"no brokers":          {Group: "g", Topic: "t", TransactionalID: "x", Handler: double, DeadLetter: deadLetter},
		"no transactional ID": {Brokers: []string{"b"}, Group: "g", Topic: "t", Handler: double, DeadLetter: deadLetter},
		"no handler":          {Brokers: []string{"b"}, Group: "g", Topic: "t", TransactionalID: "x", DeadLetter: deadLetter},
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
	defer txn.SetEndTimeout(time.Second)()
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
	e, done := start(t, config(brokers, "1", counting))
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
	select {
	case err := <-doneOlder:
		if !errors.Is(err, txn.ErrFenced) {
			t.Fatalf("the older instance stopped with %v, want ErrFenced", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the older instance still runs 30s after a newer one took its instance ID")
	}

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
