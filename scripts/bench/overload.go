package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/blackfriday-kafka/shop/scripts/openloop"
)

// The overload section's load: the capacity steps, then the overload.
const (
	overloadFirstRate  = 250             // payments/s of the first step
	overloadStepFor    = 5 * time.Second // each step of the capacity search
	overloadMaxRate    = 500_000         // past it the generator, not the edge, is measured
	overloadTimes      = 3               // the overload, in capacities
	overloadGiveUp     = 2 * time.Second
	overloadP99        = 100 * time.Millisecond // a step whose p99 reaches it fails
	overloadBisections = 3
)

// runOverload measures the payment edge past its capacity: on a payment
// process of its own, the shop pinned to CPU 0 and the load generator to
// CPU 1, first the capacity, then overloadTimes the capacity for
// o.OverloadFor. The generator is the overload command, built once and run
// as a process per step, so that its CPU is its own.
func runOverload(ctx context.Context, o Options, f *fleet, p *progress, res *Results) error {
	settle(ctx, f, p, "overload")
	pin := pinShop(f, p, o.Embedded)
	defer pin.release(f, p)
	pay, err := freshPayment(ctx, f, p)
	if err != nil {
		return err
	}
	gen, err := buildGenerator(ctx, o, pin, pay.url)
	if err != nil {
		return err
	}
	capacity, err := findCapacity(func(rate int) (*openloop.Report, error) {
		settle(ctx, f, p, fmt.Sprintf("overload step %d/s", rate))
		rep, err := gen.run(ctx, rate, overloadStepFor, false, nil)
		if err == nil {
			p.Printf("overload step %d/s for %s: %s", rate, overloadStepFor, stepSummary(rep))
		}
		return rep, err
	})
	if err != nil {
		return err
	}
	res.Add("overload_capacity_rps", strconv.Itoa(capacity))
	settle(ctx, f, p, "overload")
	rate := overloadTimes * capacity
	p.Printf("overload: capacity %d payments/s; now %d/s (%d times it) for %s, clients giving up after %s; then the check on Kafka; load average %s",
		capacity, rate, overloadTimes, o.OverloadFor, overloadGiveUp, loadAverage())
	rep, err := gen.run(ctx, rate, o.OverloadFor, true, p)
	if err != nil {
		return err
	}
	kb, rssErr := peakRSS(pay.cmd.Process.Pid)
	if rssErr != nil {
		return fmt.Errorf("the payment process's peak RSS: %w", rssErr)
	}
	addOverload(res, p, capacity, rep, kb)
	return nil
}

// addOverload reports the overload's figures; the generator's own lines
// have said the rest.
func addOverload(res *Results, p *progress, capacity int, rep *openloop.Report, rssKB int64) {
	p.Printf("overload: the payment process's peak RSS %.0f MB", float64(rssKB)/1024)
	res.Add("overload_offered_rps", fmt.Sprintf("%.0f", rep.OfferedRPS))
	res.Add("overload_ok_rps", fmt.Sprintf("%.0f", rep.OKRPS))
	res.Add("overload_goodput_ratio", fmt.Sprintf("%.3f", rep.OKRPS/float64(capacity)))
	res.Add("overload_shed_rps", fmt.Sprintf("%.0f", rep.ShedRPS))
	res.Add("overload_shed_p99_ms", fmt.Sprintf("%.1f", rep.ShedP99MS))
	res.Add("overload_ok_p99_ms", fmt.Sprintf("%.1f", rep.OKP99MS))
	res.Add("overload_timeouts", strconv.Itoa(rep.Timeouts))
	res.Add("overload_rss_mb", fmt.Sprintf("%.0f", float64(rssKB)/1024))
	if c := rep.Check; c != nil {
		res.Add("overload_lost", strconv.Itoa(c.Lost))
		res.Add("overload_charged_unanswered", strconv.Itoa(c.ChargedUnanswered))
	}
}

// stepSummary is what a step's report says, in a few words.
func stepSummary(r *openloop.Report) string {
	s := fmt.Sprintf("offered %.0f/s, ok %.0f/s (p50 %.1f ms, p99 %.1f ms), shed %.0f/s (p99 %.1f ms), %d timeouts, %d other answers, %d connection errors; %d connections, written p99 %.1f ms after their time",
		r.OfferedRPS, r.OKRPS, r.OKP50MS, r.OKP99MS, r.ShedRPS, r.ShedP99MS, r.Timeouts, r.Other, r.Errors, r.Connections, r.LateP99MS)
	if r.ShedWithoutRetryAfter > 0 {
		s += fmt.Sprintf("; DEFECT: %d of the 503s without Retry-After", r.ShedWithoutRetryAfter)
	}
	if behind := r.GeneratorBehind(); behind != "" {
		s += "; " + behind
	}
	return s
}

// passes says whether a step of the capacity search held: every payment
// answered 200, and the p99 under overloadP99.
func passes(r *openloop.Report) bool {
	return r.OK == r.Offered && r.OKP99MS < float64(overloadP99.Milliseconds())
}

// findCapacity is the highest rate whose step passes: the rate grows from
// overloadFirstRate by half a step at a time until a step fails, then is
// bisected overloadBisections times between the last rate that passed and
// the first that failed.
func findCapacity(step func(rate int) (*openloop.Report, error)) (int, error) {
	good, bad := 0, 0
	// try runs a step at rate and moves the edge it passes or fails.
	try := func(rate int) error {
		rep, err := step(rate)
		if err != nil {
			return err
		}
		if passes(rep) {
			good = rate
		} else {
			bad = rate
		}
		return nil
	}
	for rate := overloadFirstRate; bad == 0; rate = rate * 3 / 2 {
		if rate > overloadMaxRate {
			return good, fmt.Errorf("every step up to %d/s passed: the generator cannot tell the edge's capacity", good)
		}
		if err := try(rate); err != nil {
			return 0, err
		}
	}
	for range overloadBisections {
		mid := (good + bad) / 2
		if mid == good {
			break
		}
		if err := try(mid); err != nil {
			return 0, err
		}
	}
	if good == 0 {
		return 0, fmt.Errorf("no step passed, not even %d/s", bad)
	}
	return good, nil
}

// freshPayment replaces the payment process with a new one, so that its
// peak RSS is the section's.
func freshPayment(ctx context.Context, f *fleet, p *progress) (*proc, error) {
	for _, pr := range f.procs {
		if pr.service == "payment" {
			f.stop(pr)
		}
	}
	pay, err := f.start(ctx, "payment", "bench-overload")
	if err != nil {
		return nil, err
	}
	p.Printf("overload: a fresh payment process, %s (pid %d)", pay.url, pay.cmd.Process.Pid)
	return pay, nil
}

// generator is the overload command, built into the run's log directory,
// and how to run it.
type generator struct {
	bin     string
	prefix  []string // taskset -c 1, when pinned
	url     string
	brokers []string
	logPath string
}

func buildGenerator(ctx context.Context, o Options, pin *pinning, paymentURL string) (*generator, error) {
	bin, err := filepath.Abs(filepath.Join(o.LogDir, "overload"))
	if err != nil {
		return nil, err
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./scripts/overload")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./scripts/overload: %w\n%s", err, out)
	}
	g := &generator{bin: bin, url: paymentURL, brokers: o.Brokers, logPath: filepath.Join(o.LogDir, "overload.log")}
	if pin.cpus != "" {
		g.prefix = []string{"taskset", "-c", pin.generate}
	}
	return g, os.WriteFile(g.logPath, nil, 0o644)
}

// run runs the generator at rate for d, with the check on Kafka if check,
// and returns its report; its output goes to the log, and to p as it comes
// if p is not nil.
func (g *generator) run(ctx context.Context, rate int, d time.Duration, check bool, p *progress) (*openloop.Report, error) {
	args := append(append([]string{}, g.prefix...), g.bin, "-json", "-url", g.url, "-rate", strconv.Itoa(rate), "-for", d.String(),
		"-give-up", overloadGiveUp.String(), "-check="+strconv.FormatBool(check), "-drain", "2m")
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+strings.Join(g.brokers, ","))
	log, err := os.OpenFile(g.logPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	fmt.Fprintf(log, "$ %s\n", strings.Join(args, " "))
	cmd.Stderr = log
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var last string
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		last = sc.Text()
		fmt.Fprintln(log, last)
		if p != nil && !strings.HasPrefix(last, "{") {
			p.Printf("%s", last)
		}
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("%s: %w; see %s", strings.Join(args, " "), err, g.logPath)
	}
	var rep openloop.Report
	if err := json.Unmarshal([]byte(last), &rep); err != nil {
		return nil, fmt.Errorf("the generator's last line %q: %w; see %s", last, err, g.logPath)
	}
	return &rep, nil
}

// pinning is where the overload section runs: the shop on one CPU, the
// generator on another (CPU 0 and CPU 1 of a 2-core machine), when this
// process may run on 2 CPUs and taskset is there.
type pinning struct {
	shop, generate string // the CPUs, such as "0" and "1"
	// cpus are this process's CPUs before, given back by release; "" when
	// nothing is pinned.
	cpus string
}

// pinShop pins this process (every thread: the embedded cluster runs in
// it) and the running service processes to CPU 0, and has the fleet start
// its next ones there; it says what it did.
func pinShop(f *fleet, p *progress, embedded bool) *pinning {
	pin := &pinning{}
	if _, err := exec.LookPath("taskset"); err != nil {
		p.Printf("overload: no taskset on this machine: the shop and the load generator run unpinned, and share the CPUs")
		return pin
	}
	cpus, err := affinity(os.Getpid())
	ids := cpuList(cpus)
	if err != nil || len(ids) < 2 {
		p.Printf("overload: fewer than 2 CPUs (%s%s): the shop and the load generator run unpinned, and share the CPU", cpus, orNil(err))
		return pin
	}
	pin.cpus = cpus
	pin.shop, pin.generate = strconv.Itoa(ids[0]), strconv.Itoa(ids[1])
	pinFleet(f, p, pin.shop)
	f.o.Pin = []string{"taskset", "-c", pin.shop}
	where := "this process, with the embedded cluster, and the service processes"
	if !embedded {
		where = "this process and the service processes; the brokers of KAFKA_BROKERS are not pinned, and take CPU from both"
	}
	p.Printf("overload: the shop on CPU %s (taskset -a -p -c %s: %s; the fresh payment process under taskset -c %s), the load generator on CPU %s (taskset -c %s)",
		pin.shop, pin.shop, where, pin.shop, pin.generate, pin.generate)
	return pin
}

// release gives this process and the running service processes back the
// CPUs this process had before, for the sections after this one.
func (pin *pinning) release(f *fleet, p *progress) {
	if pin.cpus == "" {
		return
	}
	f.o.Pin = nil
	pinFleet(f, p, pin.cpus)
}

// pinFleet sets the CPUs of this process and of the fleet's running
// processes, every thread of each; a process it cannot set is said to p.
func pinFleet(f *fleet, p *progress, cpus string) {
	pids := []int{os.Getpid()}
	for _, pr := range f.running() {
		pids = append(pids, pr.cmd.Process.Pid)
	}
	for _, pid := range pids {
		if err := setAffinity(pid, cpus); err != nil {
			p.Printf("overload: %v", err)
		}
	}
}

func orNil(err error) string {
	if err == nil {
		return ""
	}
	return ", " + err.Error()
}

// affinity is the CPU list process pid may run on, such as "0,1" or "0-3".
func affinity(pid int) (string, error) {
	out, err := exec.Command("taskset", "-c", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		return "", fmt.Errorf("taskset -c -p %d: %w", pid, err)
	}
	// "pid 123's current affinity list: 0,1"
	i := strings.LastIndex(string(out), ": ")
	if i < 0 {
		return "", fmt.Errorf("taskset -c -p %d: %q", pid, out)
	}
	return strings.TrimSpace(string(out[i+2:])), nil
}

// setAffinity sets the CPUs of every thread of process pid.
func setAffinity(pid int, cpus string) error {
	if out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		return fmt.Errorf("taskset -a -p -c %s %d: %w: %s", cpus, pid, err, out)
	}
	return nil
}

// cpuList is the CPUs a list such as "0,2-3" names, in its order; nil if
// it cannot be read.
func cpuList(list string) []int {
	var ids []int
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			hi = lo
		}
		a, errA := strconv.Atoi(lo)
		b, errB := strconv.Atoi(hi)
		if errA != nil || errB != nil || b < a {
			return nil
		}
		for id := a; id <= b; id++ {
			ids = append(ids, id)
		}
	}
	return ids
}
