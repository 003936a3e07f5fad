package main

import (
	"fmt"
	"net/url"
	"path/filepath"
	"syscall"
	"time"
)

// dependencyPause is how long the registry and the mail server are paused,
// each once in a run with FAULTS=pause: the shop must hang on, not fail.
const dependencyPause = 20 * time.Second

// dependency is a server the shop needs that a run pauses: the schema
// registry or the mail server. Against make kafka-up it is a process of
// its own, stopped with SIGSTOP and woken with SIGCONT; on the embedded
// stack it lives in chaos's process, and the proxy in front of it freezes.
type dependency struct {
	name  string
	pid   int       // the process of make kafka-up, or 0
	proxy *tcpProxy // what the instances dial, frozen when pid is 0
	at    time.Time // when to pause it

	fault *fault
	until time.Time
	done  bool
}

func (d *dependency) how() string {
	if d.pid != 0 {
		return fmt.Sprintf("pid %d, SIGSTOP", d.pid)
	}
	return "its proxy frozen: chaos runs it in-process"
}

// step pauses d when its time came and mayPause, and wakes it after
// dependencyPause.
func (d *dependency) step(now time.Time, log *faultLog, mayPause bool) error {
	switch {
	case d.done:
	case d.fault == nil && !now.Before(d.at) && mayPause:
		if d.pid != 0 {
			if err := syscall.Kill(d.pid, syscall.SIGSTOP); err != nil {
				return fmt.Errorf("SIGSTOP %s (pid %d): %w", d.name, d.pid, err)
			}
		} else {
			d.proxy.freeze()
		}
		d.until = now.Add(dependencyPause)
		d.fault = log.begin("pause", d.name, dependencyPause, d.how())
	case d.fault != nil && !now.Before(d.until):
		d.wake(log)
	}
	return nil
}

// wake ends the pause, if one is on.
func (d *dependency) wake(log *faultLog) {
	if d.fault == nil || d.done {
		return
	}
	if d.pid != 0 {
		_ = syscall.Kill(d.pid, syscall.SIGCONT)
	} else {
		d.proxy.thaw()
	}
	d.done = true
	log.end(d.fault, "woke")
}

// pausing is true while d is paused.
func (d *dependency) pausing() bool { return d.fault != nil && !d.done }

// registryProxy starts a proxy in front of the registry at registryURL and
// returns the URL the instances are to use instead.
func registryProxy(registryURL string) (*tcpProxy, string, error) {
	u, err := url.Parse(registryURL)
	if err != nil {
		return nil, "", err
	}
	host := u.Host
	if u.Port() == "" {
		host += ":80"
	}
	p, err := startProxy(host)
	if err != nil {
		return nil, "", err
	}
	u.Host = p.addr()
	return p, u.String(), nil
}

// kafkaUpPID is the PID of a process that scripts/kafka-up started and
// recorded in runDir/name.pid, if it is still that process (its command
// line contains marker).
func kafkaUpPID(runDir, name, marker string) int {
	pid, err := ownPID(filepath.Join(runDir, name+".pid"), marker)
	if err != nil {
		return 0
	}
	return pid
}
