package services_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/payment"
	"github.com/blackfriday-kafka/shop/services/serve"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
	"github.com/blackfriday-kafka/shop/txn/store"
)

// TestStateDirDeletedBetweenRuns: the ledger on disk is a copy of Kafka's;
// without it, a restart rebuilds it from the topic and a retried key gets
// its first answer.
func TestStateDirDeletedBetweenRuns(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"payment"}}, nil)
	code, first, _ := pay(t, env.Shop.URL("payment"), "order-3003", lamp)
	if code != 200 {
		t.Fatalf("%d %s", code, first)
	}
	if err := env.Shop.Stop(); err != nil {
		t.Fatal(err)
	}
	dir := env.Config.StateDirOf("payment")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the payment service kept no state in %s: %v", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}

	var log shoptest.SyncBuffer
	cfg := env.Config
	cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
	again := shoptest.Services(t, cfg, env.Catalog, shop.Options{Services: []string{"payment"}})
	if !strings.Contains(log.String(), "rebuilt from Kafka") {
		t.Fatalf("a start without its state must say it rebuilds it; log:\n%s", log.String())
	}
	code, replay, replayed := pay(t, again.URL("payment"), "order-3003", lamp)
	if code != 200 || !replayed || replay != first {
		t.Fatalf("after deleting STATE_DIR: %d %s (replayed %v); first answer: %s", code, replay, replayed, first)
	}
	// The control: a key never answered is no replay.
	if code, _, replayed := pay(t, again.URL("payment"), "order-3004", lamp); code != 200 || replayed {
		t.Fatalf("a new key: %d, replayed %v", code, replayed)
	}
}

// TestStaleLedgerIsRebuilt: a store that claims to cover offsets beyond
// the topic's end (a cluster recreated, a STATE_DIR copied from another) is
// not trusted: the ledger is rebuilt from the topic, and says so.
func TestStaleLedgerIsRebuilt(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"payment"}}, nil)
	code, first, _ := pay(t, env.Shop.URL("payment"), "order-4004", lamp)
	if code != 200 {
		t.Fatalf("%d %s", code, first)
	}
	if err := env.Shop.Stop(); err != nil {
		t.Fatal(err)
	}
	// Past the end of every partition, with an answer Kafka never had.
	st, err := store.Open(env.Config.StateDirOf("payment"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mem := st.Memory(schemas.PaymentRequests.Name)
	marks := map[int32]store.Mark{}
	for p := int32(0); p < 3; p++ {
		m, ok, err := mem.Covered(p)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			m, _, _ = mem.Covered((p + 1) % 3) // for its topic ID
		}
		m.Next += 1_000_000
		marks[p] = m
	}
	ghost := `{"fingerprint":"x","response":{"status":"success"},"at":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`
	if err := mem.Write([]store.Entry{{Key: []byte("7/order-4005"), Value: []byte(ghost), At: time.Now()}}, marks); err != nil {
		t.Fatal(err)
	}
	st.Close()

	var log shoptest.SyncBuffer
	cfg := env.Config
	cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
	again := shoptest.Services(t, cfg, env.Catalog, shop.Options{Services: []string{"payment"}})
	if !strings.Contains(log.String(), "rebuilt from Kafka: the store is stale") {
		t.Fatalf("a stale store must be said rebuilt; log:\n%s", log.String())
	}
	code, replay, replayed := pay(t, again.URL("payment"), "order-4004", lamp)
	if code != 200 || !replayed || replay != first {
		t.Fatalf("after the stale store: %d %s (replayed %v); first answer: %s", code, replay, replayed, first)
	}
	// What the stale store held and Kafka did not is gone: a 200 of its
	// own, not the ghost's 422 (another fingerprint).
	if code, body, replayed := pay(t, again.URL("payment"), "order-4005", lamp); code != 200 || replayed {
		t.Fatalf("the stale store's answer survived the rebuild: %d %s, replayed %v", code, body, replayed)
	}
}

// TestPaymentKilledBeforeItsStoreHasTheAnswer kills the payment service
// (SIGKILL) while keyed payments flow: answers that Kafka acknowledged, and
// the client got, are not all in the store yet, which is written after the
// follower reads them back. The restarted service reads the tail after
// what its store covers, and every retry gets its first answer. The
// control makes the store claim an answer's offset without the answer: the
// retry of it is then no replay.
func TestPaymentKilledBeforeItsStoreHasTheAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real process")
	}
	stack, _ := shoptest.Cluster(t)
	bin := shopBin(t)
	dir := t.TempDir()
	start := func() (*exec.Cmd, string) {
		port, err := serve.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "payment")
		cmd.Env = append(os.Environ(),
			"KAFKA_BROKERS="+stack.BrokerList(), "SCHEMA_REGISTRY_URL="+stack.RegistryURL,
			"PORT="+strconv.Itoa(port), "INSTANCE_ID=1", "STATE_DIR="+dir, "LOG_LEVEL=warn")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := serve.WaitReady(ctx, url, 20*time.Millisecond, nil); err != nil {
			t.Fatalf("payment not ready: %v", err)
		}
		return cmd, url
	}
	body := func(i int) string {
		return fmt.Sprintf(`{"user_id": %d, "cart": [{"name": "Lamp", "price": 12.50, "quantity": %d}]}`, 1+i%40, 1+i%7)
	}
	key := func(i int) string { return "kill-" + strconv.Itoa(i) }

	first, url := start()
	var mu sync.Mutex
	answers := map[int]string{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; ; i += 16 {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, url+"/payment", strings.NewReader(body(i)))
				req.Header.Set("Idempotency-Key", key(i))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return // killed
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode == 200 {
					mu.Lock()
					answers[i] = string(b)
					mu.Unlock()
				}
			}
		})
	}
	eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(answers) < 300 {
			return fmt.Errorf("%d keyed payments answered", len(answers))
		}
		return nil
	})
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	close(stop)
	wg.Wait()

	// What the store has of the answers the clients got.
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mem := st.Memory(schemas.PaymentRequests.Name)
	ledgerKey := func(i int) []byte { return []byte(strconv.Itoa(1+i%40) + "/" + key(i)) }
	var notStored []int
	for i := range answers {
		if _, _, ok, err := mem.Get(ledgerKey(i)); err != nil {
			t.Fatal(err)
		} else if !ok {
			notStored = append(notStored, i)
		}
	}
	t.Logf("killed after %d answers; %d of them were in Kafka and not in the store", len(answers), len(notStored))
	if len(notStored) == 0 {
		t.Fatal("the kill did not land between Kafka's acknowledgement and the store's write: nothing to check")
	}
	st.Close()

	second, url := start()
	for i, want := range answers {
		code, got, replayed := pay(t, url, key(i), body(i))
		if code != 200 || !replayed || strings.TrimSpace(got) != strings.TrimSpace(want) {
			t.Fatalf("retry of %s after the kill: %d %s (replayed %v); first answer %s", key(i), code, got, replayed, want)
		}
	}

	// The control: a store that claims the offset of an answer it does
	// not have (the covered offsets moved, the answer lost) replays nothing
	// for it. Stopped cleanly, so that the store covers every answer.
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = second.Wait()
	st, err = store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lost := notStored[0]
	if err := st.Memory(schemas.PaymentRequests.Name).Write([]store.Entry{{Key: ledgerKey(lost), Delete: true}}, nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
	_, url = start()
	if code, _, replayed := pay(t, url, key(lost), body(lost)); code != 200 || replayed {
		t.Fatalf("control: with the answer gone from a store that covers it, the retry was %d, replayed %v", code, replayed)
	}
}

// TestAnswerWrittenStraightToTheLedgerIsReplayed: payment.AnswerRecord is
// the record the service writes for an answer, so that a history written
// straight to payment-requests (the bench's) is one the service replays.
func TestAnswerWrittenStraightToTheLedgerIsReplayed(t *testing.T) {
	stack, cat := shoptest.Cluster(t)
	cl, _ := shoptest.Clients(t, stack)
	req, fe := payment.ParseRequest([]byte(lamp))
	if fe != nil {
		t.Fatal(fe)
	}
	written := &kgo.Record{Topic: schemas.Payments.Name, Partition: 1, Offset: 41}
	rec, err := payment.AnswerRecord(req, "order-5005", written, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	s := shoptest.Services(t, shoptest.Config(t, stack), cat, shop.Options{Services: []string{"payment"}})
	code, body, replayed := pay(t, s.URL("payment"), "order-5005", lamp)
	if code != 200 || !replayed || !strings.Contains(body, `"payment_id":"`+schemas.PaymentID(7, "order-5005")+`"`) ||
		!strings.Contains(body, `"offset":41`) {
		t.Fatalf("an answer written straight to the ledger: %d %s, replayed %v", code, body, replayed)
	}
	// The control: another body under the key is the usual 422.
	if code, _, _ := pay(t, s.URL("payment"), "order-5005", chair); code != 422 {
		t.Fatalf("another body under the key: %d, want 422", code)
	}
}

// TestExpiredAnswerIsRemovedAndNotReplayed: past IDEMPOTENCY_WINDOW an
// answer gets its tombstone in payment-requests and leaves the store, and a
// retry is no replay. The control: within the window it is one.
func TestExpiredAnswerIsRemovedAndNotReplayed(t *testing.T) {
	const window = 2 * time.Second
	env := shoptest.Start(t, shop.Options{Services: []string{"payment"}}, func(cfg *config.Config) { cfg.IdempotencyWindow = window })
	url := env.Shop.URL("payment")
	if code, first, _ := pay(t, url, "order-6006", lamp); code != 200 {
		t.Fatalf("%d %s", code, first)
	}
	if code, _, replayed := pay(t, url, "order-6006", lamp); code != 200 || !replayed {
		t.Fatalf("within the window: %d, replayed %v", code, replayed)
	}
	key := "7/order-6006"
	eventually(t, 10*window, func() error {
		recs, err := infra.ReadTopic(context.Background(), env.Stack.Brokers, schemas.PaymentRequests.Name, kgo.ReadCommitted(), 200*time.Millisecond)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if string(r.Key) == key && r.Value == nil {
				return nil
			}
		}
		return fmt.Errorf("no tombstone for %s among %d records", key, len(recs))
	})
	if err := env.Shop.Stop(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(env.Config.StateDirOf("payment"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, ok, err := st.Memory(schemas.PaymentRequests.Name).Get([]byte(key))
	st.Close()
	if ok || err != nil {
		t.Fatalf("the expired answer is still in the store (%v, %v)", ok, err)
	}
	again := shoptest.Services(t, env.Config, env.Catalog, shop.Options{Services: []string{"payment"}})
	if code, _, replayed := pay(t, again.URL("payment"), "order-6006", lamp); code != 200 || replayed {
		t.Fatalf("past the window: %d, replayed %v; want a new answer", code, replayed)
	}
}

// TestCorruptLedgerIsRebuilt: a store that cannot be read (its manifest
// overwritten) is deleted and rebuilt from the topic, and the log says so;
// a retried key still gets its first answer.
func TestCorruptLedgerIsRebuilt(t *testing.T) {
	env := shoptest.Start(t, shop.Options{Services: []string{"payment"}}, nil)
	code, first, _ := pay(t, env.Shop.URL("payment"), "order-7007", lamp)
	if code != 200 {
		t.Fatalf("%d %s", code, first)
	}
	if err := env.Shop.Stop(); err != nil {
		t.Fatal(err)
	}
	manifests, _ := filepath.Glob(filepath.Join(env.Config.StateDirOf("payment"), "MANIFEST-*"))
	if len(manifests) == 0 {
		t.Fatal("no manifest in the payment service's store")
	}
	for _, m := range manifests {
		if err := os.WriteFile(m, []byte(strings.Repeat("not a manifest ", 100)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var log shoptest.SyncBuffer
	cfg := env.Config
	cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
	again := shoptest.Services(t, cfg, env.Catalog, shop.Options{Services: []string{"payment"}})
	if !strings.Contains(log.String(), "state store unreadable") {
		t.Fatalf("a corrupt store must be said rebuilt; log:\n%s", log.String())
	}
	code, replay, replayed := pay(t, again.URL("payment"), "order-7007", lamp)
	if code != 200 || !replayed || replay != first {
		t.Fatalf("after the corrupt store: %d %s (replayed %v); first answer: %s", code, replay, replayed, first)
	}
}
