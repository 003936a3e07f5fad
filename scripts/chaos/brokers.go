package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// node is a Kafka node that scripts/kafka-up started.
type node struct {
	id   int
	port string // client port, as in KAFKA_BROKERS
}

// brokerChaos kills the nodes of a cluster started by scripts/kafka-up, one
// at a time, with SIGKILL, and restarts each a few seconds later with
// scripts/kafka-up, in the background so that instance kills go on. Never
// more than one node is down: the next kill waits until kafka-up has the
// cluster whole again (three brokers, every ISR full).
type brokerChaos struct {
	runDir, kafkaUp, log string
	nodes                []node
	rng                  *rand.Rand

	kills     int
	down      *node      // the node killed, until it is back
	killedAt  time.Time  // when down was killed
	restartAt time.Time  // when to start kafka-up for down
	restarted chan error // kafka-up's result, while it runs
	next      time.Time  // the earliest next kill
}

// findNodes lists the nodes whose PID files are in runDir, whose process is
// alive and a Kafka node, and whose client port is one of brokers: the
// cluster under test was started by scripts/kafka-up. It returns nothing
// otherwise (make cluster, another cluster, or kafka-up not run).
func findNodes(runDir string, brokers []string) []node {
	pidfiles, _ := filepath.Glob(filepath.Join(runDir, "node-*.pid"))
	var nodes []node
	for _, pidfile := range pidfiles {
		id, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(pidfile), "node-"), ".pid"))
		if err != nil {
			continue
		}
		if _, err := nodePID(runDir, id); err != nil {
			continue
		}
		port := clientPort(filepath.Join(runDir, fmt.Sprintf("node-%d", id), "server.properties"))
		if port == "" || !slices.ContainsFunc(brokers, func(b string) bool { return strings.HasSuffix(b, ":"+port) }) {
			continue
		}
		nodes = append(nodes, node{id: id, port: port})
	}
	return nodes
}

// nodePID is the PID of node id if its process is still the Kafka node
// kafka-up started.
func nodePID(runDir string, id int) (int, error) {
	b, err := os.ReadFile(filepath.Join(runDir, fmt.Sprintf("node-%d.pid", id)))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, err
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "kafka.Kafka") {
		return 0, fmt.Errorf("node %d (pid %d) is not running", id, pid)
	}
	return pid, nil
}

var listenerPort = regexp.MustCompile(`^listeners=(?:SASL_)?PLAINTEXT://[^:]*:(\d+)`)

// clientPort reads the client port of a node from its server.properties.
func clientPort(config string) string {
	f, err := os.Open(config)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := listenerPort.FindStringSubmatch(sc.Text()); m != nil {
			return m[1]
		}
	}
	return ""
}

func newBrokerChaos(o Options, nodes []node, rng *rand.Rand) *brokerChaos {
	return &brokerChaos{
		runDir: o.KafkaRunDir, kafkaUp: o.KafkaUp, log: logPath(o.LogDir, "kafka-up"),
		nodes: nodes, rng: rng,
		// The first kill comes early, while the payments flow.
		next: time.Now().Add(2*time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))),
	}
}

// idle is true when no node is down and no restart runs.
func (b *brokerChaos) idle() bool { return b.down == nil }

// step moves the broker chaos on: it reaps a finished restart, starts a due
// one, and kills a node when mayKill and it is time. It says what it did.
func (b *brokerChaos) step(now time.Time, mayKill bool) (string, error) {
	switch {
	case b.restarted != nil:
		select {
		case err := <-b.restarted:
			b.restarted = nil
			if err != nil {
				return "", fmt.Errorf("restarting broker %d with %s: %w (see %s)", b.down.id, b.kafkaUp, err, b.log)
			}
			msg := fmt.Sprintf("broker %d back, ISR full, %.1fs after its SIGKILL", b.down.id, now.Sub(b.killedAt).Seconds())
			b.down = nil
			b.next = now.Add(3*time.Second + time.Duration(b.rng.Int64N(int64(5*time.Second))))
			return msg, nil
		default:
			return "", nil
		}
	case b.down != nil:
		if now.Before(b.restartAt) {
			return "", nil
		}
		b.restart()
		return fmt.Sprintf("restarting broker %d (scripts/kafka-up)", b.down.id), nil
	case mayKill && now.After(b.next):
		n := b.nodes[b.rng.IntN(len(b.nodes))]
		pid, err := nodePID(b.runDir, n.id)
		if err != nil {
			return "", fmt.Errorf("broker %d: %w", n.id, err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return "", fmt.Errorf("SIGKILL broker %d (pid %d): %w", n.id, pid, err)
		}
		b.kills++
		b.down, b.killedAt = &n, now
		b.restartAt = now.Add(3*time.Second + time.Duration(b.rng.Int64N(int64(3*time.Second))))
		return fmt.Sprintf("broker %d killed (SIGKILL, pid %d, 127.0.0.1:%s)", n.id, pid, n.port), nil
	}
	return "", nil
}

// restart runs scripts/kafka-up in the background; it starts the dead node
// again and returns once the cluster is whole.
func (b *brokerChaos) restart() {
	done := make(chan error, 1)
	b.restarted = done
	log, err := os.OpenFile(b.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		done <- err
		return
	}
	fmt.Fprintf(log, "--- chaos: restarting broker %d at %s\n", b.down.id, time.Now().UTC().Format(time.RFC3339))
	cmd := exec.Command(b.kafkaUp)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		done <- err
		return
	}
	go func() {
		err := cmd.Wait()
		log.Close()
		done <- err
	}()
}

// finish leaves the cluster whole: it waits for a restart under way, or
// runs one for a node still down.
func (b *brokerChaos) finish() error {
	if b.down == nil {
		return nil
	}
	if b.restarted == nil {
		b.restart()
	}
	err := <-b.restarted
	b.restarted, b.down = nil, nil
	return err
}

// status is the broker part of a progress line.
func (b *brokerChaos) status() string {
	switch {
	case b.restarted != nil:
		return fmt.Sprintf("  brokers %d (broker %d restarting)", b.kills, b.down.id)
	case b.down != nil:
		return fmt.Sprintf("  brokers %d (broker %d down)", b.kills, b.down.id)
	}
	return fmt.Sprintf("  brokers %d", b.kills)
}
