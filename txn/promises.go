package txn

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// promises waits for the produce results of one batch and keeps the first
// failure, with the input record whose output failed: one failed output is
// enough to abort the whole transaction.
type promises struct {
	wg    sync.WaitGroup
	mu    sync.Mutex
	first error
	of    *kgo.Record
}

func (p *promises) promise(in *kgo.Record) func(*kgo.Record, error) {
	p.wg.Add(1)
	return func(_ *kgo.Record, err error) {
		if err != nil {
			p.mu.Lock()
			if p.first == nil {
				p.first, p.of = err, in
			}
			p.mu.Unlock()
		}
		p.wg.Done()
	}
}

// wait returns the first failure and the input it belongs to.
func (p *promises) wait() (*kgo.Record, error) {
	p.wg.Wait()
	return p.of, p.first
}
