package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
)

// proc is one service process.
type proc struct {
	service, id string
	cmd         *exec.Cmd
	url         string
	logPath     string
	start       time.Time // just before the exec
	exited      chan struct{}
	err         error
	peakKB      int64 // VmHWM when it was stopped
}

// fleet is the service processes of a run, and the peak RSS of each service
// over all its processes.
type fleet struct {
	o      Options
	procs  []*proc
	orders []*proc
	peakKB map[string]int64
	sink   *mailSink // where the email instances deliver (SMTP_ADDR)
}

// serviceCmd is `shop <service>` as the bench runs its services: on the
// run's cluster, instance id on port (0: a free one), exactly-once, the
// run's transaction bounds and log level, its state on disk in the run's
// log directory; env on top (later entries win).
// With o.Pin, the command runs under it (taskset -c 0).
func serviceCmd(o Options, service, id string, port int, env ...string) *exec.Cmd {
	cmd := exec.Command(o.Shop, service)
	if len(o.Pin) > 0 {
		cmd = exec.Command(o.Pin[0], append(o.Pin[1:len(o.Pin):len(o.Pin)], o.Shop, service)...)
	}
	cmd.Env = append(append(os.Environ(),
		"KAFKA_BROKERS="+strings.Join(o.Brokers, ","), "SCHEMA_REGISTRY_URL="+o.RegistryURL,
		"PORT="+strconv.Itoa(port), "INSTANCE_ID="+id, "DELIVERY=exactly-once", "PROCESSING_DELAY=0s",
		"LOG_LEVEL="+o.LogLevel, "LOG_FORMAT=json", "STATE_DIR="+filepath.Join(o.LogDir, "state", service+"-"+id),
		"TXN_MAX_RECORDS="+orEmpty(o.TxnRecords), "TXN_MAX_INTERVAL="+orEmptyDuration(o.TxnInterval)), env...)
	return cmd
}

func newFleet(o Options) *fleet { return &fleet{o: o, peakKB: map[string]int64{}} }

// launch executes `shop <service>` as serviceCmd builds it, its log in
// o.LogDir. The stream that pipe names ((*exec.Cmd).StdoutPipe or
// StderrPipe) is copied into the log line by line, each line then passed
// to onLine; the other goes to the log directly, and so do both when pipe
// is nil.
func launch(o Options, service, id string, port int, env []string, pipe func(*exec.Cmd) (io.ReadCloser, error), onLine func(string)) (*proc, error) {
	logPath := filepath.Join(o.LogDir, service+"-"+id+".log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := serviceCmd(o, service, id, port, env...)
	var piped io.ReadCloser
	if pipe != nil {
		if piped, err = pipe(cmd); err != nil {
			log.Close()
			return nil, err
		}
	}
	// After the pipe, which refuses a stream already set.
	if cmd.Stdout == nil {
		cmd.Stdout = log
	}
	if cmd.Stderr == nil {
		cmd.Stderr = log
	}
	p := &proc{service: service, id: id, cmd: cmd, logPath: logPath, start: time.Now(), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s %s: %w (build it with make build)", o.Shop, service, err)
	}
	copied := make(chan struct{})
	if piped != nil {
		go func() {
			defer close(copied)
			sc := bufio.NewScanner(piped)
			sc.Buffer(make([]byte, 64<<10), 4<<20)
			for sc.Scan() {
				fmt.Fprintln(log, sc.Text())
				onLine(sc.Text())
			}
		}()
	} else {
		close(copied)
	}
	go func() {
		<-copied // Wait closes the pipe: only once everything is read from it
		p.err = cmd.Wait()
		log.Close()
		close(p.exited)
	}()
	return p, nil
}

// stop reads the process's peak RSS, then stops it with SIGTERM (it commits
// or aborts and leaves its group), killing it after grace. It returns the
// peak RSS in KiB; 0 if it could not be read, and the one read then if it
// was stopped before.
func (p *proc) stop(grace time.Duration) int64 {
	select {
	case <-p.exited:
		return p.peakKB
	default:
	}
	if kb, err := peakRSS(p.cmd.Process.Pid); err == nil {
		p.peakKB = kb
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	return p.peakKB
}

// start runs `shop <service>` with instance ID id and waits for its "ready:"
// line, which names its URL (it listens on a free port).
func (f *fleet) start(ctx context.Context, service, id string, env ...string) (*proc, error) {
	if f.sink != nil {
		env = append([]string{"SMTP_ADDR=" + f.sink.Addr()}, env...)
	}
	ready := make(chan string, 1)
	p, err := launch(f.o, service, id, 0, env, (*exec.Cmd).StdoutPipe, func(line string) {
		if strings.HasPrefix(line, "ready:") {
			select {
			case ready <- line:
			default:
			}
		}
	})
	if err != nil {
		return nil, err
	}
	f.procs = append(f.procs, p)
	select {
	case line := <-ready:
		for _, field := range strings.Fields(line)[1:] {
			if v, ok := strings.CutPrefix(field, service+"="); ok {
				p.url = v
			}
		}
		if p.url == "" {
			return nil, fmt.Errorf("%s %s: no URL in its ready line %q", service, id, line)
		}
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("%s %s exited before it was ready (%v); see %s", service, id, p.err, p.logPath)
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("%s %s not ready after 60s; see %s", service, id, p.logPath)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func orEmpty(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func orEmptyDuration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// url is the URL of the first running process of service.
func (f *fleet) url(service string) string {
	for _, p := range f.running() {
		if p.service == service {
			return p.url
		}
	}
	return ""
}

// running are the processes that have not exited.
func (f *fleet) running() []*proc {
	var live []*proc
	for _, p := range f.procs {
		select {
		case <-p.exited:
		default:
			live = append(live, p)
		}
	}
	return live
}

// startOrders replaces the order instances with n new ones, each with the
// given PROCESSING_DELAY, and waits until the group has given each of them
// its partitions.
func (f *fleet) startOrders(ctx context.Context, n int, delay time.Duration) error {
	for _, p := range f.orders {
		f.stop(p)
	}
	f.orders = nil
	for i := 1; i <= n; i++ {
		p, err := f.start(ctx, "order", fmt.Sprintf("bench-%d", i), "PROCESSING_DELAY="+delay.String())
		if err != nil {
			return err
		}
		f.orders = append(f.orders, p)
	}
	return waitGroup(ctx, f.o.Brokers, "order-service-group", n)
}

// stop stops p with a grace of 20 seconds and counts its peak RSS in its
// service's.
func (f *fleet) stop(p *proc) {
	if kb := p.stop(20 * time.Second); kb > 0 {
		f.peakKB[p.service] = max(f.peakKB[p.service], kb)
	}
}

// stopAll stops every process and says what each one's peak RSS was.
func (f *fleet) stopAll() string {
	var peaks []string
	for _, p := range f.procs {
		f.stop(p)
		if p.peakKB > 0 {
			peaks = append(peaks, fmt.Sprintf("%s %s %.0f MB", p.service, p.id, float64(p.peakKB)/1024))
		}
	}
	return strings.Join(peaks, ", ")
}

// settle waits until the service processes are idle, or two minutes. A
// service started on a cluster with history first reads its views' topics
// from the beginning (analytics all five), and a figure taken meanwhile
// would measure that replay. It returns how long it waited.
func (f *fleet) settle(ctx context.Context) time.Duration {
	start := time.Now()
	prev := f.cpuTicks()
	quiet := 0
	for time.Since(start) < 2*time.Minute {
		select {
		case <-ctx.Done():
			return time.Since(start)
		case <-time.After(500 * time.Millisecond):
		}
		cur := f.cpuTicks()
		cores := float64(cur-prev) / clockTicks / 0.5
		prev = cur
		if cores < 0.15 {
			if quiet++; quiet >= 2 {
				break
			}
		} else {
			quiet = 0
		}
	}
	return time.Since(start)
}

// clockTicks is the unit of the CPU times in /proc/<pid>/stat (USER_HZ,
// 100 on Linux).
const clockTicks = 100

// cpuTicks is the CPU time used so far by the running service processes.
func (f *fleet) cpuTicks() int64 {
	var total int64
	for _, ticks := range f.serviceTicks() {
		total += ticks
	}
	return total
}

// cpuByService is the CPU time used so far by the running processes of
// each service, by this process ("bench": the embedded brokers when there
// are, and the load's clients), and by the whole machine ("machine").
func (f *fleet) cpuByService() map[string]int64 {
	bench, machine := procTicks("self"), machineTicks()
	by := f.serviceTicks()
	by["bench"], by["machine"] = bench, machine
	return by
}

// serviceTicks is the CPU time used so far by the running processes of
// each service: all cpuTicks needs, which settle asks every 500 ms.
func (f *fleet) serviceTicks() map[string]int64 {
	by := make(map[string]int64)
	for _, p := range f.running() {
		by[p.service] += procTicks(strconv.Itoa(p.cmd.Process.Pid))
	}
	return by
}

// machineTicks is the CPU time all the machine's CPUs spent busy (not
// idle, not waiting for I/O), in clock ticks.
func machineTicks() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range fields[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 8 { // not idle, not iowait; guest time is in user already
			busy += n
		}
	}
	return busy
}

// procTicks is the user and system CPU time of process pid ("self" for
// this one), in clock ticks; 0 if it cannot be read.
func procTicks(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name, field 2, is in parentheses and may hold
	// spaces: count fields after its closing parenthesis.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(fields) <= 12 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return utime + stime
}

// cpuSpent says how much CPU each service spent between two readings of
// cpuByService, per unit of work: "payment 41µs, order 20µs, …".
func cpuSpent(before, after map[string]int64, units int) string {
	if units <= 0 {
		return "no work done"
	}
	var parts []string
	per := func(ticks int64) string {
		return time.Duration(float64(ticks) / clockTicks * float64(time.Second) / float64(units)).Round(time.Microsecond).String()
	}
	ours := int64(0)
	for _, s := range []string{"payment", "order", "email", "analytics", "bench"} {
		if _, ok := after[s]; !ok {
			continue
		}
		ours += after[s] - before[s]
		parts = append(parts, s+" "+per(after[s]-before[s]))
	}
	if m := after["machine"] - before["machine"]; m > 0 {
		parts = append(parts, "everything else on the machine (a real cluster's brokers, other people's work) "+per(max(0, m-ours)))
	}
	return strings.Join(parts, ", ")
}

// peakRSS is a process's VmHWM, its peak resident set, in KiB.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmHWM")
}

// waitGroup waits until group is stable with n members that share every
// partition of its input topic between them.
func waitGroup(ctx context.Context, brokers []string, group string, n int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		described, err := adm.DescribeGroups(ctx, group)
		if err == nil {
			g := described[group]
			assigned := 0
			for _, ps := range g.AssignedPartitions() {
				assigned += len(ps)
			}
			last = fmt.Sprintf("state %s, %d members, %d partitions assigned", g.State, len(g.Members), assigned)
			if g.State == "Stable" && len(g.Members) == n && assigned == infra.Partitions {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("group %s not stable with %d members after 90s (%s)", group, n, last)
}
