package txn

import (
	"log/slog"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// recoveries counts, and logs with the partition, what the Kafka client
// does on its own to keep a transaction going, which would otherwise be
// silent: a refused produce batch resent after a metadata refresh, a batch
// error that fails the producer ID, a new producer epoch. franz-go tells of
// them only in its log, which this reads before passing it on.
type recoveries struct {
	log *slog.Logger

	refused   atomic.Int64 // produce batches held for a metadata refresh before they are resent
	resets    atomic.Int64 // batch errors that failed the producer ID: the transaction aborts
	inits     atomic.Int64 // producer IDs or epochs initialised; all but the first are recoveries
	addsParts atomic.Int64 // AddPartitionsToTxn requests, CONCURRENT_TRANSACTIONS retries included
}

func (r *recoveries) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (r *recoveries) Log(level kgo.LogLevel, msg string, kv ...any) {
	switch msg {
	case "metadata update triggered":
		if why, _ := value(kv, "why").(string); why == "produce request had retry batches" {
			r.refused.Add(1)
			r.log.Warn("Kafka refused produce batches; the client resends them after a metadata refresh", "why", why)
		}
	case "batch errored, failing the producer ID":
		r.resets.Add(1)
		r.log.Warn("Kafka refused a produce batch for good; the transaction aborts",
			"topic", value(kv, "topic"), "partition", value(kv, "partition"), "producer_epoch", value(kv, "producer_epoch"), "err", value(kv, "err"))
	case "producer id initialization success":
		if r.inits.Add(1) > 1 {
			r.log.Warn("producer re-initialised after a failure", "producer_id", value(kv, "id"), "epoch", value(kv, "epoch"))
		}
	}
	if level <= kgo.LogLevelWarn {
		r.log.Warn("kafka client: "+msg, kv...)
	}
}

// OnBrokerE2E counts AddPartitionsToTxn requests (kgo.HookBrokerE2E): more
// than one per broker a transaction are CONCURRENT_TRANSACTIONS retries.
func (r *recoveries) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, _ kgo.BrokerE2E) {
	if key == int16(kmsg.AddPartitionsToTxn) {
		r.addsParts.Add(1)
	}
}

func value(kv []any, key string) any {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == key {
			return kv[i+1]
		}
	}
	return nil
}
