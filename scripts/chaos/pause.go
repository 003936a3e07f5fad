package main

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/blackfriday-kafka/shop/txn"
)

// zombieAfter is how long an instance must stay paused to wake up a zombie:
// longer than its session timeout, so the group has given its partitions
// to another instance, and than its transaction timeout, so the
// coordinator has aborted what it had open. It wakes with records in hand
// and tries to produce and commit them all the same.
var zombieAfter = max(txn.DefaultSessionTimeout, txn.DefaultTransactionTimeout)

// pauser pauses order and email instances with SIGSTOP and wakes them with
// SIGCONT: at most one instance of each service at a time, so that the
// group always has another to give the paused one's partitions to. Every
// third pause lasts longer than zombieAfter, the others 1 to 6 s.
type pauser struct {
	fleet *fleet
	log   *faultLog
	rng   *rand.Rand
	next  time.Time

	paused      map[*instance]pause
	count, long int // pauses begun; those over, longer than zombieAfter
}

type pause struct {
	until time.Time
	fault *fault
}

func newPauser(f *fleet, log *faultLog, rng *rand.Rand) *pauser {
	return &pauser{fleet: f, log: log, rng: rng, next: time.Now().Add(time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))),
		paused: map[*instance]pause{}}
}

// pauseLength is the length of pause number i (from 0).
func (p *pauser) pauseLength(i int) time.Duration {
	if i%3 == 1 {
		return zombieAfter + 2*time.Second + time.Duration(p.rng.Int64N(int64(8*time.Second)))
	}
	return time.Second + time.Duration(p.rng.Int64N(int64(5*time.Second)))
}

// step wakes the instances whose pause is over, and pauses one when it is
// time and mayPause.
func (p *pauser) step(now time.Time, mayPause bool) error {
	for m, ps := range p.paused {
		if now.Before(ps.until) {
			continue
		}
		p.wake(m, ps)
	}
	if !mayPause || now.Before(p.next) {
		return nil
	}
	var free []*instance
	for _, m := range p.fleet.members {
		if m.service != "payment" && !p.busy(m.service) && m.alive() {
			free = append(free, m)
		}
	}
	if len(free) == 0 {
		return nil
	}
	m := free[p.rng.IntN(len(free))]
	d := p.pauseLength(p.count)
	if err := m.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("SIGSTOP %s %s: %w", m.service, m.id, err)
	}
	note := ""
	if d > zombieAfter {
		note = fmt.Sprintf("longer than the %s session and transaction timeouts: it wakes a zombie", zombieAfter)
	}
	p.paused[m] = pause{until: now.Add(d), fault: p.log.begin("pause", fmt.Sprintf("%s %s (pid %d)", m.service, m.id, m.cmd.Process.Pid), d, note)}
	m.paused = true
	p.count++
	p.next = now.Add(time.Second + time.Duration(p.rng.Int64N(int64(2*time.Second))))
	return nil
}

func (p *pauser) wake(m *instance, ps pause) {
	_ = m.cmd.Process.Signal(syscall.SIGCONT)
	m.paused = false
	delete(p.paused, m)
	p.log.end(ps.fault, "SIGCONT")
	if ps.fault.length > zombieAfter {
		p.long++
	}
}

// busy reports whether an instance of service is paused now.
func (p *pauser) busy(service string) bool {
	for m := range p.paused {
		if m.service == service {
			return true
		}
	}
	return false
}

// idle is true when no instance is paused.
func (p *pauser) idle() bool { return len(p.paused) == 0 }

// wakeAll wakes every paused instance, at the end of a run or on its way
// out: no process of the run is left stopped.
func (p *pauser) wakeAll() {
	for m, ps := range p.paused {
		p.wake(m, ps)
	}
}
