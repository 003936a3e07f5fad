package txn

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// promises waits for the produce results of one batch and keeps the first
// failure: one failed output is enough to abort the whole transaction.
type promises struct {
	wg    sync.WaitGroup
	mu    sync.Mutex
	first error
}

func (p *promises) promise() func(*kgo.Record, error) {
	p.wg.Add(1)
	return func(_ *kgo.Record, err error) {
		if err != nil {
			p.mu.Lock()
			if p.first == nil {
				p.first = err
			}
			p.mu.Unlock()
		}
		p.wg.Done()
	}
}

func (p *promises) wait() error {
	p.wg.Wait()
	return p.first
}
