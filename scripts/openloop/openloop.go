// Package openloop offers payments to POST /payment open-loop, as Black
// Friday's shoppers do: each at its scheduled time, whatever the earlier
// ones are doing, from a pool of connections that grows while all are
// busy, each client giving up after a while. A closed loop (clients that
// wait for each answer before the next) cannot load a service beyond what
// it serves; this can, and it measures each latency from the payment's
// scheduled time, so that a server that falls behind is not excused by a
// generator that waited for it (coordinated omission).
//
// Then it checks what the payments left in Kafka: each has a user of its
// own, the key of its records, so the check counts the payments charged on
// payment-successful whose client never got a 200, and the payments
// answered 200 without an order on order-created once the pipeline has
// drained.
package openloop

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/scripts/latency"
)

// Bounds of a run.
const (
	MaxPayments = 10_000_000 // rate × duration: the per-payment records stay within a few hundred MB
	MaxConns    = 20_000     // the pool's default bound
)

// Options of a run.
type Options struct {
	URL      string        // the payment service, such as http://localhost:8000
	Rate     int           // payments offered a second
	For      time.Duration // how long they are offered
	GiveUp   time.Duration // a client waits this long from its payment's scheduled time
	MaxConns int           // the pool's bound; 0 is MaxConns
	// Warm is how many connections open before the first payment: 0
	// opens a tenth of Rate (the payments of 100 ms), less than 0 none.
	Warm int
	// FirstUser is the user of the first payment, payment i's is FirstUser+i; 0
	// draws one around 10^12, away from the users of the other tools.
	FirstUser int64
	Progress  time.Duration // a line of progress this often; 0 for none

	// Brokers, if any, are where the check reads payment-successful and
	// order-created, with Kafka's options (credentials) on top; the check
	// waits up to Drain for every order.
	Brokers []string
	Kafka   []kgo.Opt
	Drain   time.Duration
}

func (o Options) payments() int { return int(int64(o.Rate) * int64(o.For) / int64(time.Second)) }

// validate refuses a run it cannot make, and fills in the defaults.
func (o *Options) validate() error {
	switch {
	case o.Rate < 1:
		return fmt.Errorf("rate %d: want at least 1 payment a second", o.Rate)
	case o.For <= 0 || o.GiveUp <= 0:
		return fmt.Errorf("duration %s, give-up %s: want both above 0", o.For, o.GiveUp)
	case o.payments() < 1 || o.payments() > MaxPayments:
		return fmt.Errorf("%d payments/s for %s is %d payments: want 1 to %d", o.Rate, o.For, o.payments(), MaxPayments)
	case o.MaxConns < 0 || o.FirstUser < 0:
		return fmt.Errorf("max connections %d, first user %d: want neither below 0", o.MaxConns, o.FirstUser)
	}
	if o.MaxConns == 0 {
		o.MaxConns = MaxConns
	}
	switch {
	case o.Warm == 0:
		o.Warm = max(1, o.Rate/10)
	case o.Warm < 0:
		o.Warm = 0
	}
	o.Warm = min(o.Warm, o.MaxConns)
	if o.FirstUser == 0 {
		o.FirstUser = 1_000_000_000_000 + rand.Int64N(1_000_000_000)*1_000
	}
	return nil
}

// Run offers the payments, then, with brokers, checks what they left in
// Kafka. out, if not nil, gets the progress.
func Run(ctx context.Context, o Options, out io.Writer) (*Report, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	l, err := newLoad(o)
	if err != nil {
		return nil, err
	}
	var c *check
	if len(o.Brokers) > 0 {
		if c, err = startCheck(ctx, o); err != nil {
			return nil, err
		}
		defer c.close()
	}
	l.run(ctx, out)
	rep := l.report()
	if c == nil {
		return rep, ctx.Err()
	}
	checked, err := c.reckon(ctx, l, out)
	rep.Check = &checked
	return rep, err
}

// Report is what a run measured. The bench reads it as JSON.
type Report struct {
	URL       string  `json:"url"`
	Rate      int     `json:"rate"`
	ForS      float64 `json:"for_s"`
	GiveUpS   float64 `json:"give_up_s"`
	FirstUser int64   `json:"first_user"`

	// Offered = OK + Shed + Other + Errors + Timeouts.
	Offered  int `json:"offered"`
	OK       int `json:"ok"`
	Shed     int `json:"shed"`
	Other    int `json:"other"`
	Errors   int `json:"errors"`
	Timeouts int `json:"timeouts"`
	// ShedWithoutRetryAfter counts the 503s without Retry-After: a defect
	// of a shedding server, whose clients then retry at once.
	ShedWithoutRetryAfter int    `json:"shed_without_retry_after"`
	OtherStatuses         string `json:"other_statuses,omitempty"` // such as "409×3, 500×1"
	FirstError            string `json:"first_error,omitempty"`
	// Unsent counts the timeouts of payments that waited for a connection
	// until their client gave up: the pool was at its bound. LateAnswers
	// counts those whose answer the generator read only after the give-up,
	// short of CPU: both are the generator's, not the server's.
	Unsent      int `json:"unsent"`
	LateAnswers int `json:"late_answers"`
	Connections int `json:"connections"`
	Warm        int `json:"warm"` // of them, opened before the first payment

	OfferedRPS float64 `json:"offered_rps"`
	OKRPS      float64 `json:"ok_rps"`
	ShedRPS    float64 `json:"shed_rps"`
	// From the payment's scheduled time to its answer.
	OKP50MS   float64 `json:"ok_p50_ms"`
	OKP99MS   float64 `json:"ok_p99_ms"`
	ShedP99MS float64 `json:"shed_p99_ms"`
	// LateP99MS is how late the generator wrote the payments after their
	// scheduled time (p99): well above a millisecond, the generator, not
	// the server, ran short of CPU or connections.
	LateP99MS float64 `json:"late_p99_ms"`

	Check *Checked `json:"check,omitempty"` // nil without brokers
}

func (l *load) report() *Report {
	n := l.sched.n
	r := &Report{URL: l.o.URL, Rate: l.o.Rate, ForS: l.o.For.Seconds(), GiveUpS: l.o.GiveUp.Seconds(), FirstUser: l.o.FirstUser,
		Offered: n, OK: int(l.counts[ok].Load()), Shed: int(l.counts[shed].Load()), Other: int(l.counts[other].Load()),
		Errors: int(l.counts[failed].Load()), Timeouts: int(l.counts[timedOut].Load()),
		ShedWithoutRetryAfter: l.bareShed, OtherStatuses: l.otherStatuses(), FirstError: l.firstFailure,
		Unsent: int(l.unsent.Load()), LateAnswers: int(l.lateAnswers.Load()), Connections: int(l.conns.Load()), Warm: l.o.Warm}
	// The rates are over the time the payments were offered in.
	offeredFor := l.sched.offset(n)
	perSecond := func(k int) float64 { return float64(k) / offeredFor.Seconds() }
	r.OfferedRPS, r.OKRPS, r.ShedRPS = perSecond(r.Offered), perSecond(r.OK), perSecond(r.Shed)

	// Only a payment that was written has a lateness: at most the unsent fewer.
	oks, sheds, late := make([]time.Duration, 0, r.OK), make([]time.Duration, 0, r.Shed), make([]time.Duration, 0, max(0, n-r.Unsent))
	for i := range n {
		switch l.outcome[i] {
		case ok:
			oks = append(oks, l.latency[i])
		case shed:
			sheds = append(sheds, l.latency[i])
		}
		if l.late[i] > 0 {
			late = append(late, l.late[i])
		}
	}
	slices.Sort(oks)
	r.OKP50MS, r.OKP99MS = ms(latency.Sorted(oks, 50)), ms(latency.Sorted(oks, 99))
	r.ShedP99MS, r.LateP99MS = ms(latency.Percentile(sheds, 99)), ms(latency.Percentile(late, 99))
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Line is the run's summary, the last line of `overload` without -json.
func (r *Report) Line() string {
	line := fmt.Sprintf("overload: offered_rps=%.0f ok_rps=%.0f shed_rps=%.0f other=%d errors=%d timeouts=%d ok_p50_ms=%.1f ok_p99_ms=%.1f shed_p99_ms=%.1f",
		r.OfferedRPS, r.OKRPS, r.ShedRPS, r.Other, r.Errors, r.Timeouts, r.OKP50MS, r.OKP99MS, r.ShedP99MS)
	if r.Check == nil {
		return line + " charged=- charged_unanswered=- lost=-"
	}
	return line + fmt.Sprintf(" charged=%d charged_unanswered=%d lost=%d", r.Check.Charged, r.Check.ChargedUnanswered, r.Check.Lost)
}

// Details are what the summary leaves out, a line each: the defects a
// shedding server must not have, the causes of other answers and errors,
// and whether the generator kept its schedule.
func (r *Report) Details() []string {
	var out []string
	if r.ShedWithoutRetryAfter > 0 {
		out = append(out, fmt.Sprintf("overload: DEFECT: %d of %d answers 503 had no Retry-After", r.ShedWithoutRetryAfter, r.Shed))
	}
	if r.OtherStatuses != "" {
		out = append(out, "overload: other statuses: "+r.OtherStatuses)
	}
	if r.FirstError != "" {
		out = append(out, fmt.Sprintf("overload: %d connection errors, the first: %s", r.Errors, r.FirstError))
	}
	out = append(out, fmt.Sprintf("overload: %d payments at %d/s for %gs, clients giving up after %gs, users %d to %d; %d connections (%d opened before the first payment); the generator wrote them p99 %.1f ms after their time",
		r.Offered, r.Rate, r.ForS, r.GiveUpS, r.FirstUser, r.FirstUser+int64(r.Offered)-1, r.Connections, r.Warm, r.LateP99MS))
	if behind := r.GeneratorBehind(); behind != "" {
		out = append(out, "overload: "+behind)
	}
	if c := r.Check; c != nil {
		state := "drained"
		if !c.Drained {
			state = "not drained at the bound"
		}
		out = append(out, fmt.Sprintf("overload: on Kafka: %d charged, %d of them never answered 200, %d duplicates, %d answered 200 without an order (%s)",
			c.Charged, c.ChargedUnanswered, c.Duplicates, c.Lost, state))
	}
	return out
}

// GeneratorBehind says how the generator fell behind its schedule, "" if
// it kept it: then the figures count its delays against the server.
func (r *Report) GeneratorBehind() string {
	if r.Unsent == 0 && r.LateAnswers == 0 && r.LateP99MS < LateBound {
		return ""
	}
	return fmt.Sprintf("the generator fell behind (written p99 %.1f ms after their time; %d timeouts waited for a connection, %d answers read after the give-up): part of the latencies and timeouts are its own; give it a CPU of its own",
		r.LateP99MS, r.Unsent, r.LateAnswers)
}

// LateBound is how late past their time, at p99 in ms, the generator may
// write the payments and still be said to keep its schedule: its tick is a
// millisecond.
const LateBound = 20

// JSON is the report as one line of JSON.
func (r *Report) JSON() string {
	b, _ := json.Marshal(r)
	return string(b)
}
