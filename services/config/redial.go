package config

import (
	"context"
	"net"
	"sync"
	"time"
)

// Redialling a broker that refused the last dial waits, from
// firstRedial doubling to lastRedial, as Java's client does
// (reconnect.backoff.ms and reconnect.backoff.max.ms). franz-go dials again
// at once, and its producer retries AddPartitionsToTxn against a dead
// transaction coordinator in a loop: until the coordinator moved, each
// stage dialled the dead broker, and logged that it could not, thousands of
// times a second.
const (
	firstRedial = 50 * time.Millisecond
	lastRedial  = time.Second
	dialTimeout = 10 * time.Second // franz-go's default
)

// redialer dials brokers, waiting before it dials again one that refused.
type redialer struct {
	mu     sync.Mutex
	failed map[string]refusal // by address
}

type refusal struct {
	until   time.Time // no dial before
	backoff time.Duration
}

func newRedialer() *redialer { return &redialer{failed: make(map[string]refusal)} }

func (d *redialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	wait := time.Until(d.failed[addr].until)
	d.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	conn, err := (&net.Dialer{Timeout: dialTimeout}).DialContext(ctx, network, addr)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		// A client dials a broker on several connections at once: the
		// wait doubles once per round of refusals, not once for each.
		if r := d.failed[addr]; ctx.Err() == nil && !time.Now().Before(r.until) {
			backoff := min(max(2*r.backoff, firstRedial), lastRedial)
			d.failed[addr] = refusal{until: time.Now().Add(backoff), backoff: backoff}
		}
		return nil, err
	}
	delete(d.failed, addr)
	return conn, nil
}
