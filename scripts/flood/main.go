// Command flood writes valid Avro payments straight to payment-successful,
// bypassing the payment service, to build a backlog: the tutorial's Black
// Friday flood (make flood).
//
//	go run ./scripts/flood -n 1000
//	go run ./scripts/flood --intense     5,000 payments
//	go run ./scripts/flood --extreme     10,000 payments
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/target"
)

const description = `
Writes N valid payments (random users and carts, the payment service's
schema, keyed by user_id) to payment-successful through an idempotent
producer with acks from all in-sync replicas, so exactly N records land.
Prints progress every second and, last, the rate Kafka acknowledged them at.
The order service then has a backlog to drain: watch it with make lag.`

func main() {
	fs := flag.NewFlagSet("flood", flag.ExitOnError)
	target.Usage(fs, "flood [-n N | --intense | --extreme | --mode MODE]", description)
	t := target.Flags(fs)
	var opts Options
	fs.IntVar(&opts.N, "n", Modes["normal"], "payments to write")
	intense := fs.Bool("intense", false, "write 5,000 payments")
	extreme := fs.Bool("extreme", false, "write 10,000 payments")
	mode := fs.String("mode", "", "normal (1,000), intense (5,000) or extreme (10,000); -n wins if given")
	fs.IntVar(&opts.Users, "users", 1000, "user IDs are drawn from 1 to this")
	fs.DurationVar(&opts.Progress, "progress", time.Second, "how often to print progress (0: never)")
	fs.Parse(os.Args[1:])

	nSet := false
	fs.Visit(func(f *flag.Flag) { nSet = nSet || f.Name == "n" })
	switch {
	case *extreme:
		*mode = "extreme"
	case *intense:
		*mode = "intense"
	}
	if *mode != "" && !nSet {
		n, ok := Modes[*mode]
		if !ok {
			fail(fmt.Errorf("mode %q: want normal, intense or extreme", *mode))
		}
		opts.N = n
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reg, err := t.Registry()
	if err != nil {
		fail(err)
	}
	cat, err := schemas.Resolved(ctx, reg)
	if err != nil {
		fail(fmt.Errorf("schema registry at %s: %w", t.RegistryURL, err))
	}
	cl, err := kgo.NewClient(append(t.Kafka(), kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		fail(err)
	}
	defer cl.Close()
	fmt.Printf("flood: writing %d payments to %s on %v\n", opts.N, schemas.Payments.Name, t.Brokers)
	res, err := Flood(ctx, cl, schemas.Payments.Codec(cat), opts, os.Stdout)
	if err != nil {
		fail(fmt.Errorf("%w (%d acknowledged before)", err, res.Written))
	}
	fmt.Println(res)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "flood:", err)
	os.Exit(1)
}
