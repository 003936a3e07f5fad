// Command simulate is the tutorial's Black Friday: shoppers paying at once
// on the payment service's POST /payment (make simulate N=100 C=20).
//
//	go run ./scripts/simulate -n 1000 -c 50
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/blackfriday-kafka/shop/scripts/target"
)

const description = `
Posts N payments (random users and carts) to PAYMENT_URL/payment (default
http://localhost:8000), C at a time, prints progress every second, then the
failures by cause (HTTP status and offending field, refused connection,
timeout), the accepted payments per second and the latency of accepted
payments at p50, p95 and p99. Only a shop on this machine (loopback) is a
target, and the run stops after --timeout whatever remains.`

func main() {
	fs := flag.NewFlagSet("simulate", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: simulate [-n N] [-c C] [flags]\n%s\n\nflags:\n", description)
		fs.PrintDefaults()
	}
	opts := Options{URL: os.Getenv("PAYMENT_URL")}
	if opts.URL == "" {
		opts.URL = "http://localhost:8000"
	}
	fs.StringVar(&opts.URL, "url", opts.URL, "the payment service (env PAYMENT_URL)")
	fs.IntVar(&opts.N, "n", 100, "payments to post in all")
	fs.IntVar(&opts.C, "c", 20, "payments in flight at once")
	fs.DurationVar(&opts.Timeout, "timeout", 2*time.Minute, "stop after this long, whatever remains")
	requestTimeout := fs.Duration("request-timeout", 15*time.Second, "give up on one request after this long")
	fs.Float64Var(&opts.Invalid, "invalid", 0, "share of deliberately invalid payments, 0 to 1 (expect HTTP 400)")
	fs.IntVar(&opts.Users, "users", 1000, "user IDs are drawn from 1 to this")
	fs.IntVar(&opts.Retries, "retries", target.EnvInt("RETRIES", 0), "post each payment again this many times with its Idempotency-Key, the first retry at once (env RETRIES)")
	fs.DurationVar(&opts.Progress, "progress", time.Second, "how often to print progress (0: never)")
	fs.Parse(os.Args[1:])
	if opts.Retries < 0 {
		fmt.Fprintf(os.Stderr, "simulate: -retries %d: want 0 or more\n", opts.Retries)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client := &http.Client{
		Timeout:   *requestTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: opts.C, MaxConnsPerHost: opts.C},
	}
	fmt.Printf("simulate: %d payments to %s/payment, %d at a time\n", opts.N, opts.URL, opts.C)
	rep, err := Simulate(ctx, client, opts, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "simulate:", err)
		os.Exit(1)
	}
	fmt.Println(rep)
	if rep.OK == 0 {
		os.Exit(1)
	}
}
