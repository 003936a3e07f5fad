package txn_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/txn"
)

// A transaction ends as soon as its records are processed: it must not sit
// out the producer's linger, which idled the engine for most of each
// transaction and capped it at MaxRecords per linger. Here the linger is 3s
// and four transactions of 50 records must take far less than one linger.
func TestTransactionDoesNotWaitOutTheLinger(t *testing.T) {
	for name, mode := range map[string]txn.Mode{"exactly-once": txn.ExactlyOnce, "at-least-once": txn.AtLeastOnce} {
		t.Run(name, func(t *testing.T) {
			brokers := cluster(t, 3)
			produce(t, brokers, 200)
			cfg := config(brokers, "1", double) // 50 records per transaction
			cfg.Mode = mode
			cfg.MaxInterval = 10 * time.Second // only MaxRecords ends a transaction
			cfg.Opts = []kgo.Opt{kgo.ProducerLinger(3 * time.Second)}
			begin := time.Now()
			e, _ := start(t, cfg)
			waitCommitted(t, brokers)
			if took := time.Since(begin); took > 2500*time.Millisecond {
				t.Fatalf("200 records in 4 transactions took %v: the transactions waited for the 3s linger", took.Round(time.Millisecond))
			}
			if st := e.Stats(); st.Committed < 4 || st.Records != 200 {
				t.Fatalf("stats = %+v, want 200 records in 4 or more transactions", st)
			}
			exactlyDoubled(t, readAll(t, brokers, out, kgo.ReadCommitted()), 200)
		})
	}
}
