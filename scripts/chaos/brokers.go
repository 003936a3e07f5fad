package main

import (
	"bufio"
	"context"
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

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
)

// node is a Kafka node that scripts/kafka-up started.
type node struct {
	id   int
	port string // client port, as in KAFKA_BROKERS
}

// brokerChaos strikes the nodes of a cluster started by scripts/kafka-up,
// one at a time, and the next only once the cluster is whole again (three
// brokers, every ISR full): it kills one with SIGKILL and restarts it a few
// seconds later with scripts/kafka-up, in the background so that instance
// faults go on; it pauses one with SIGSTOP, some longer than the brokers'
// session timeout (the controller fences it and moves its leaderships,
// then it wakes up believing it still leads); it cuts one off from the
// others and from the shop by taking its network link down, while its
// process runs.
type brokerChaos struct {
	runDir, kafkaUp, log string
	brokers              []string
	connect              []kgo.Opt
	nodes                []node
	rng                  *rand.Rand
	faults               Faults
	flog                 *faultLog

	kills, pauses, partitions int

	hit       *node      // the node struck, until the cluster is whole again
	kind      string     // what struck it: kill, pause or partition
	fault     *fault     // its entry in the fault log
	healAt    time.Time  // when to restart, wake or reconnect it
	recovered chan error // kafka-up's result, or the wait for a full ISR, while it runs
	next      time.Time  // the earliest next fault
}

// The fewest broker faults of each kind a run makes, when FAULTS has it.
var brokerMinimum = map[string]int{"kill": 1, "pause": 3, "partition": 2}

// brokerSessionTimeout is Kafka's broker.session.timeout.ms, which
// scripts/kafka-up leaves at its default: a broker silent for longer is
// fenced by the controller, and its partitions get other leaders.
const brokerSessionTimeout = 9 * time.Second

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
	pid, err := ownPID(filepath.Join(runDir, fmt.Sprintf("node-%d.pid", id)), "kafka.Kafka")
	if err != nil {
		return 0, fmt.Errorf("node %d: %w", id, err)
	}
	return pid, nil
}

// ownPID is the PID in pidfile if that process is alive and its command
// line contains marker: still the process kafka-up started, not a later one
// with its PID.
func ownPID(pidfile, marker string) (int, error) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, err
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), marker) {
		return 0, fmt.Errorf("pid %d is not running", pid)
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

func newBrokerChaos(o Options, nodes []node, rng *rand.Rand, flog *faultLog) *brokerChaos {
	return &brokerChaos{
		runDir: o.KafkaRunDir, kafkaUp: o.KafkaUp, log: logPath(o.LogDir, "kafka-up"),
		brokers: o.Brokers, connect: o.Connect, nodes: nodes, rng: rng, faults: o.Faults, flog: flog,
		// The first fault comes early, while the payments flow.
		next: time.Now().Add(2*time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))),
	}
}

// idle is true when no node is struck and no recovery runs.
func (b *brokerChaos) idle() bool { return b.hit == nil }

// done is true once the run made the fewest faults of each kind it makes.
func (b *brokerChaos) done() bool {
	for _, k := range b.kinds() {
		if b.count(k) < brokerMinimum[k] {
			return false
		}
	}
	return true
}

// kinds are the broker faults of the run.
func (b *brokerChaos) kinds() []string {
	var ks []string
	if b.faults.Kill {
		ks = append(ks, "kill")
	}
	if b.faults.Pause {
		ks = append(ks, "pause")
	}
	if b.faults.Partition {
		ks = append(ks, "partition")
	}
	return ks
}

func (b *brokerChaos) count(kind string) int {
	switch kind {
	case "kill":
		return b.kills
	case "pause":
		return b.pauses
	}
	return b.partitions
}

// nextKind is the kind furthest from its minimum, the first drawn at
// random among equals.
func (b *brokerChaos) nextKind() string {
	ks := b.kinds()
	b.rng.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
	best := ks[0]
	for _, k := range ks[1:] {
		if float64(b.count(k))/float64(brokerMinimum[k]) < float64(b.count(best))/float64(brokerMinimum[best]) {
			best = k
		}
	}
	return best
}

// step moves the broker chaos on: it reaps a finished recovery, heals a
// node when its time came, and strikes one when mayStrike and it is time.
func (b *brokerChaos) step(now time.Time, mayStrike bool) error {
	switch {
	case b.recovered != nil:
		select {
		case err := <-b.recovered:
			b.recovered = nil
			if err != nil {
				return fmt.Errorf("broker %d after its %s: %w (see %s)", b.hit.id, b.kind, err, b.log)
			}
			fmt.Fprintf(b.flog.out, "  %5.1fs  broker %d back, every ISR full, %.1fs after its %s began\n",
				now.Sub(b.flog.start).Seconds(), b.hit.id, now.Sub(b.flog.start).Seconds()-b.fault.at.Seconds(), b.kind)
			b.hit = nil
			b.next = now.Add(3*time.Second + time.Duration(b.rng.Int64N(int64(5*time.Second))))
		default:
		}
	case b.hit != nil:
		if now.Before(b.healAt) {
			return nil
		}
		return b.heal()
	case mayStrike && now.After(b.next):
		return b.strike(now)
	}
	return nil
}

// strike makes the next fault on a random node.
func (b *brokerChaos) strike(now time.Time) error {
	n := b.nodes[b.rng.IntN(len(b.nodes))]
	pid, err := nodePID(b.runDir, n.id)
	if err != nil {
		return fmt.Errorf("broker %d: %w", n.id, err)
	}
	target := fmt.Sprintf("broker %d (pid %d, 127.0.0.1:%s)", n.id, pid, n.port)
	kind := b.nextKind()
	var d time.Duration
	note := ""
	switch kind {
	case "kill":
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return fmt.Errorf("SIGKILL broker %d (pid %d): %w", n.id, pid, err)
		}
		b.kills++
		d = 3*time.Second + time.Duration(b.rng.Int64N(int64(3*time.Second)))
		note = fmt.Sprintf("SIGKILL, restarted by %s in %.1fs", b.kafkaUp, d.Seconds())
	case "pause":
		// Every other pause outlasts the broker session timeout.
		d = 2*time.Second + time.Duration(b.rng.Int64N(int64(4*time.Second)))
		if b.pauses%2 == 0 {
			d = brokerSessionTimeout + 3*time.Second + time.Duration(b.rng.Int64N(int64(6*time.Second)))
			note = fmt.Sprintf("longer than the %s broker session timeout: fenced, it wakes up a zombie", brokerSessionTimeout)
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return fmt.Errorf("SIGSTOP broker %d (pid %d): %w", n.id, pid, err)
		}
		b.pauses++
		note = strings.TrimPrefix(note+"; SIGSTOP", "; ")
	case "partition":
		link, err := nodeLink(b.runDir, n.id)
		if err != nil {
			return err
		}
		d = brokerSessionTimeout + 2*time.Second + time.Duration(b.rng.Int64N(int64(8*time.Second)))
		if err := setLink(link, "down"); err != nil {
			return err
		}
		b.partitions++
		note = fmt.Sprintf("link %s down: cut off from the other brokers and the shop, its process running", link)
	}
	b.hit, b.kind, b.healAt = &n, kind, now.Add(d)
	if kind == "kill" {
		d = 0
	}
	b.fault = b.flog.begin(kind, target, d, note)
	return nil
}

// heal ends the fault of the node struck and waits in the background for
// the cluster to be whole: kafka-up restarts a killed node, SIGCONT wakes
// a paused one, and a cut one gets its link back.
func (b *brokerChaos) heal() error {
	done := make(chan error, 1)
	b.recovered = done
	switch b.kind {
	case "kill":
		fmt.Fprintf(b.flog.out, "  %5.1fs  restarting broker %d (%s)\n", time.Since(b.flog.start).Seconds(), b.hit.id, b.kafkaUp)
		b.restart(done)
		return nil
	case "pause":
		pid, err := nodePID(b.runDir, b.hit.id)
		if err != nil {
			return err
		}
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			return fmt.Errorf("SIGCONT broker %d (pid %d): %w", b.hit.id, pid, err)
		}
		b.flog.end(b.fault, "SIGCONT")
	case "partition":
		link, err := nodeLink(b.runDir, b.hit.id)
		if err != nil {
			return err
		}
		if err := setLink(link, "up"); err != nil {
			return err
		}
		b.flog.end(b.fault, "link up:")
	}
	go func() { done <- waitInSync(b.brokers, b.connect, 3*time.Minute) }()
	return nil
}

// restart runs scripts/kafka-up in the background; it starts the dead node
// again and returns once the cluster is whole.
func (b *brokerChaos) restart(done chan error) {
	log, err := os.OpenFile(b.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		done <- err
		return
	}
	fmt.Fprintf(log, "--- chaos: restarting broker %d at %s\n", b.hit.id, time.Now().UTC().Format(time.RFC3339))
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

// finish leaves the cluster whole: it heals the node struck, if its fault
// is still on, and waits for its recovery.
func (b *brokerChaos) finish() error {
	if b.hit == nil {
		return nil
	}
	if b.recovered == nil {
		if err := b.heal(); err != nil {
			return err
		}
	}
	err := <-b.recovered
	b.recovered, b.hit = nil, nil
	return err
}

// status is the broker part of a progress line.
func (b *brokerChaos) status() string {
	s := fmt.Sprintf("  brokers: %d killed, %d paused, %d cut off", b.kills, b.pauses, b.partitions)
	switch {
	case b.recovered != nil:
		return s + fmt.Sprintf(" (broker %d recovering)", b.hit.id)
	case b.hit != nil:
		return s + fmt.Sprintf(" (broker %d: %s)", b.hit.id, b.kind)
	}
	return s
}

// waitInSync waits until every partition of every topic has all its
// replicas in sync, or timeout.
func waitInSync(brokers []string, connect []kgo.Opt, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	last := ""
	for {
		short, _, err := infra.OutOfSync(ctx, brokers, connect...)
		switch {
		case err == nil && len(short) == 0:
			return nil
		case err != nil:
			last = err.Error()
		default:
			last = fmt.Sprintf("%d partitions short, such as %s", len(short), short[0])
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not every ISR full after %s: %s", timeout, last)
		case <-time.After(time.Second):
		}
	}
}

// nodeLink is the host side of node id's network link, which scripts/kafka-up
// records when it runs the node in a network namespace of its own.
func nodeLink(runDir string, id int) (string, error) {
	b, err := os.ReadFile(filepath.Join(runDir, fmt.Sprintf("node-%d.link", id)))
	if err != nil {
		return "", fmt.Errorf("broker %d has no network link of its own (%v): partitions need make kafka-up as root, which runs each node in a network namespace", id, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// setLink takes a link down or brings it up. Down, the packets to and
// from the node are dropped where they cross: connections hang, nobody is
// told, as when a cable is pulled.
func setLink(link, state string) error {
	if out, err := exec.Command("ip", "link", "set", "dev", link, state).CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set dev %s %s: %v: %s", link, state, err, strings.TrimSpace(string(out)))
	}
	return nil
}
