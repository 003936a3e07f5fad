// Command overload offers payments to POST /payment open-loop, each at its
// scheduled time whatever the earlier ones are doing, to see what the
// payment edge does past its capacity (make overload RATE=12000 FOR=15s),
// then checks on Kafka what the payments left there.
//
//	go run ./scripts/overload -rate 12000 -for 15s [-give-up 2s] [-json]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/openloop"
	"github.com/blackfriday-kafka/shop/scripts/target"
)

const description = `
Offers -rate payments a second to PAYMENT_URL/payment (default
http://localhost:8000) for -for, open-loop: the i-th at start + i/rate,
whatever the earlier ones are doing, from a pool of connections that grows
while all are busy (up to 20,000; a tenth of -rate opened before the first
payment, so that the run does not begin with a storm of dials). Each payment is a user of its own, and
its client gives up -give-up after its scheduled time; latencies count from
that time. Answers are counted as ok (200), shed (503, with or without
Retry-After), other statuses, connection errors and timeouts, with progress
every second.

With -check (the default when Kafka answers at KAFKA_BROKERS, default
localhost:9092-9094), it then reads payment-successful from where it ended
before the load, keys only: the payments charged, those charged whose
client did not get a 200 (charged_unanswered), and duplicates; and waits,
up to -drain, until order-created has an order for every payment answered
200 (lost: those without one when the drain ends).

The last line is "overload: offered_rps=… ok_rps=… shed_rps=… other=…
errors=… timeouts=… ok_p50_ms=… ok_p99_ms=… shed_p99_ms=… charged=…
charged_unanswered=… lost=…", or with -json the report as JSON. The
generator takes CPU from a shop on the same machine: pin them apart, as
make bench ARGS="-only overload" does (taskset -c 1 for the generator).`

func main() {
	fs := flag.NewFlagSet("overload", flag.ExitOnError)
	target.Usage(fs, "overload [-rate N] [-for D] [-give-up D] [-check] [-json]", description)
	o := openloop.Options{URL: target.Env("PAYMENT_URL", "http://localhost:8000"), Progress: time.Second}
	fs.StringVar(&o.URL, "url", o.URL, "the payment service (env PAYMENT_URL)")
	fs.IntVar(&o.Rate, "rate", 2000, "payments offered a second")
	fs.DurationVar(&o.For, "for", 10*time.Second, "how long to offer them")
	fs.DurationVar(&o.GiveUp, "give-up", 2*time.Second, "a client gives up this long after its payment's scheduled time")
	fs.IntVar(&o.MaxConns, "max-conns", openloop.MaxConns, "the pool's bound: past it, payments wait for a connection")
	fs.IntVar(&o.Warm, "warm", 0, "connections opened before the first payment (0: a tenth of -rate; -1: none)")
	fs.DurationVar(&o.Drain, "drain", 2*time.Minute, "-check: how long to wait for the orders")
	check := fs.Bool("check", true, "then check payment-successful and order-created on Kafka; left out when Kafka does not answer, unless given")
	asJSON := fs.Bool("json", false, "print the report as JSON, as the last line")
	fs.Parse(os.Args[1:])

	// Each connection is a file: past the limit, dials would fail here
	// and be counted against the server.
	if limit := openFiles(); limit > 0 && o.MaxConns > limit-256 {
		o.MaxConns = max(1, limit-256)
		fmt.Printf("overload: at most %d connections, within this process's limit of %d open files (ulimit -n)\n", o.MaxConns, limit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t := target.FromEnv()
	if *check && (explicit(fs, "check") || kafkaAnswers(ctx, t)) {
		o.Brokers, o.Kafka = t.Brokers, t.Config.Connect()
	} else if *check {
		fmt.Printf("overload: no Kafka answered at %s: no check of payment-successful and order-created\n", strings.Join(t.Brokers, ","))
	}
	fmt.Printf("overload: %d payments/s for %s to %s/payment, clients giving up after %s\n", o.Rate, o.For, o.URL, o.GiveUp)
	rep, err := openloop.Run(ctx, o, os.Stdout)
	if rep != nil {
		for _, line := range rep.Details() {
			fmt.Println(line)
		}
		fmt.Println(rep.Line())
		if *asJSON {
			fmt.Println(rep.JSON())
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "overload:", err)
		os.Exit(1)
	}
}

// explicit says whether the flag name was given on the command line.
func explicit(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// kafkaAnswers says whether t's brokers list payment-successful's ends
// within 3 seconds.
func kafkaAnswers(ctx context.Context, t target.Target) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := infra.EndOffsets(ctx, t.Brokers, []string{schemas.Payments.Name}, t.Config.Connect()...)
	return err == nil
}
