package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// instance is one order or email process.
type instance struct {
	service, id string
	cmd         *exec.Cmd
	exited      chan struct{}
	err         error
}

// fleet is the order and email instances of a run.
type fleet struct {
	o       Options
	members []*instance
	kills   int
	killsOf map[string]int // by service
	stopped bool
}

func newFleet(o Options) *fleet {
	f := &fleet{o: o, killsOf: map[string]int{}}
	for _, service := range []string{"order", "email"} {
		for i := 1; i <= o.Instances; i++ {
			f.members = append(f.members, &instance{service: service, id: fmt.Sprintf("chaos-%d", i)})
		}
	}
	return f
}

func (f *fleet) start() error {
	for _, m := range f.members {
		if err := f.spawn(m); err != nil {
			return err
		}
	}
	return nil
}

// spawn starts m. Its instance ID, and so its transactional ID, is the same
// across restarts: a restart fences whatever its killed self left open.
func (f *fleet) spawn(m *instance) error {
	log, err := os.OpenFile(logPath(f.o.LogDir, m.service+"-"+m.id), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(f.o.Shop, m.service)
	cmd.Env = append(os.Environ(),
		"KAFKA_BROKERS="+joinBrokers(f.o.Brokers), "SCHEMA_REGISTRY_URL="+f.o.RegistryURL,
		"PORT=0", "INSTANCE_ID="+m.id, "DELIVERY="+f.o.Mode, "LOG_LEVEL=warn", "LOG_FORMAT=text")
	if f.o.DeliverTo != "" {
		cmd.Env = append(cmd.Env, "SMTP_ADDR="+f.o.DeliverTo)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s %s: %w (build it with make build)", f.o.Shop, m.service, err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func() {
		m.err = cmd.Wait()
		log.Close()
		close(m.exited)
	}()
	return nil
}

// killOne kills a random instance with SIGKILL and starts it again.
func (f *fleet) killOne(rng *rand.Rand) error {
	m := f.members[rng.IntN(len(f.members))]
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
	f.kills++
	f.killsOf[m.service]++
	return f.spawn(m)
}

// reap restarts an instance that stopped by itself, saying so.
func (f *fleet) reap() error {
	for _, m := range f.members {
		select {
		case <-m.exited:
			fmt.Fprintf(os.Stderr, "  %s %s stopped by itself (%v), restarting it; see %s\n",
				m.service, m.id, m.err, logPath(f.o.LogDir, m.service+"-"+m.id))
			if err := f.spawn(m); err != nil {
				return err
			}
		default:
		}
	}
	return nil
}

// stop asks every instance to stop (SIGTERM: commit or abort, leave the
// group) and kills the ones still there after 20 seconds.
func (f *fleet) stop() {
	if f.stopped {
		return
	}
	f.stopped = true
	for _, m := range f.members {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(20 * time.Second)
	for _, m := range f.members {
		select {
		case <-m.exited:
		case <-deadline:
			_ = m.cmd.Process.Kill()
			<-m.exited
		}
	}
}

func joinBrokers(bs []string) string {
	s := ""
	for i, b := range bs {
		if i > 0 {
			s += ","
		}
		s += b
	}
	return s
}
