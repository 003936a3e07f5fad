package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/blackfriday-kafka/shop/services/serve"
)

// instance is one payment, order or email process.
type instance struct {
	service, id string
	port        int // a payment instance's, the same across restarts; 0 picks one
	cmd         *exec.Cmd
	exited      chan struct{}
	err         error
	paused      bool // stopped with SIGSTOP by the pauser
}

// alive is true while the process runs (or is paused).
func (m *instance) alive() bool {
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// fleet is the order and email instances of a run.
type fleet struct {
	o       Options
	members []*instance
	kills   int
	killsOf map[string]int // by service
	stopped bool
}

// paymentInstances is how many payment instances an HTTP run kills among.
const paymentInstances = 2

func newFleet(o Options) (*fleet, error) {
	f := &fleet{o: o, killsOf: map[string]int{}}
	if o.Via == "http" {
		for i := 1; i <= paymentInstances; i++ {
			port, err := serve.FreePort()
			if err != nil {
				return nil, err
			}
			f.members = append(f.members, &instance{service: "payment", id: fmt.Sprintf("chaos-%d", i), port: port})
		}
	}
	for _, service := range []string{"order", "email"} {
		for i := 1; i <= o.Instances; i++ {
			f.members = append(f.members, &instance{service: service, id: fmt.Sprintf("chaos-%d", i)})
		}
	}
	return f, nil
}

// paymentURLs are where the payment instances listen.
func (f *fleet) paymentURLs() []string {
	var urls []string
	for _, m := range f.members {
		if m.port != 0 {
			urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", m.port))
		}
	}
	return urls
}

// waitPayments waits until every payment instance answers /readyz, and
// fails at once if one exits meanwhile.
func (f *fleet) waitPayments(ctx context.Context) error {
	for _, m := range f.members {
		if m.port == 0 {
			continue
		}
		url := fmt.Sprintf("http://127.0.0.1:%d", m.port)
		switch err := serve.WaitReady(ctx, url, 100*time.Millisecond, m.exited); {
		case errors.Is(err, serve.ErrStopped):
			return fmt.Errorf("payment instance %s exited before it was ready: %v (its log is in .run/chaos)", m.id, m.err)
		case err != nil:
			return fmt.Errorf("payment instance at %s/readyz not ready: %w", url, err)
		}
	}
	return nil
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
	cmd.Env = append(serviceEnv(),
		"KAFKA_BROKERS="+joinBrokers(f.o.Brokers), "SCHEMA_REGISTRY_URL="+cmp.Or(f.o.RegistryVia, f.o.RegistryURL),
		fmt.Sprintf("PORT=%d", m.port), "INSTANCE_ID="+m.id, "DELIVERY="+f.o.Mode, "LOG_LEVEL=warn", "LOG_FORMAT=text",
		"STATE_DIR="+filepath.Join(f.o.LogDir, "state", m.service+"-"+m.id))
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

// killOne kills a random instance with SIGKILL and starts it again; a
// paused one is left to its pause.
func (f *fleet) killOne(rng *rand.Rand, log *faultLog) error {
	var running []*instance
	for _, m := range f.members {
		if !m.paused {
			running = append(running, m)
		}
	}
	m := running[rng.IntN(len(running))]
	pid := m.cmd.Process.Pid
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
	f.kills++
	f.killsOf[m.service]++
	log.begin("kill", fmt.Sprintf("%s %s (pid %d)", m.service, m.id, pid), 0, "")
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
		if m.paused { // a stopped process acts on SIGTERM only once woken
			_ = m.cmd.Process.Signal(syscall.SIGCONT)
		}
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, m := range f.members {
		select {
		case <-m.exited:
		case <-time.After(time.Until(deadline)):
			_ = m.cmd.Process.Kill()
			<-m.exited
		}
	}
}

// serviceEnv is chaos's environment without the admin's credentials: in
// secure mode each instance signs in as its own service's principal.
func serviceEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KAFKA_USERNAME=") && !strings.HasPrefix(kv, "KAFKA_PASSWORD=") {
			env = append(env, kv)
		}
	}
	return env
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
