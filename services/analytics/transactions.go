package analytics

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/blackfriday-kafka/shop/txn/loop"
)

// Producer is one exactly-once instance as its transaction coordinator
// sees it: what the dashboard shows of the stages' producers, whichever
// process runs them.
type Producer struct {
	TransactionalID string     `json:"transactional_id"` // order-service-2
	State           string     `json:"state"`            // Empty, Ongoing, PrepareCommit, CompleteCommit…
	Epoch           int16      `json:"epoch"`
	OpenSince       *time.Time `json:"open_since,omitempty"` // while a transaction is open
}

// producers asks the cluster every interval for the transactions of the
// stages, by the prefix of their transactional IDs.
type producers struct {
	adm      *kadm.Client
	prefixes []string
	every    time.Duration
	log      *slog.Logger

	mu   sync.RWMutex
	last []Producer
}

func newProducers(adm *kadm.Client, every time.Duration, log *slog.Logger, prefixes ...string) *producers {
	return &producers{adm: adm, prefixes: prefixes, every: every, log: log, last: []Producer{}}
}

func (p *producers) Run(ctx context.Context) error {
	p.refresh(ctx)
	return loop.Every(ctx, p.every, func(time.Time) { p.refresh(ctx) })
}

func (p *producers) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(p.every, 2*time.Second))
	defer cancel()
	listed, err := p.adm.ListTransactions(ctx, nil, nil)
	if err != nil && len(listed) == 0 {
		p.log.Debug("listing the transactions failed", "err", err)
		return
	}
	var ids []string
	for _, id := range listed.TransactionalIDs() {
		if slices.ContainsFunc(p.prefixes, func(pre string) bool { return strings.HasPrefix(id, pre) }) {
			ids = append(ids, id)
		}
	}
	// With none of the shop's producers on record now, the panel empties.
	var described kadm.DescribedTransactions
	if len(ids) > 0 {
		if described, err = p.adm.DescribeTransactions(ctx, ids...); err != nil && len(described) == 0 {
			p.log.Debug("describing the transactions failed", "err", err)
			return
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	next := make([]Producer, 0, len(described))
	for _, d := range described.Sorted() {
		if d.Err != nil {
			continue
		}
		pr := Producer{TransactionalID: d.TxnID, State: d.State, Epoch: d.ProducerEpoch}
		if d.State == "Ongoing" && d.StartTimestamp > 0 {
			at := time.UnixMilli(d.StartTimestamp)
			pr.OpenSince = &at
		}
		next = append(next, pr)
	}
	p.last = next // in transactional ID order, as Sorted gives them
}

func (p *producers) Last() []Producer {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.last
}
