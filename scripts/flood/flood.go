package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/progress"
	"github.com/blackfriday-kafka/shop/scripts/shoppers"
)

// Modes are the tutorial's flood sizes.
var Modes = map[string]int{"normal": 1000, "intense": 5000, "extreme": 10000}

// Options shape a flood.
type Options struct {
	N        int           // payments to write
	Users    int           // user IDs are drawn from 1..Users
	Progress time.Duration // how often to print progress; 0: never
}

// Result is what a flood achieved.
type Result struct {
	Written int
	Elapsed time.Duration
}

// Rate is payments acknowledged per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Written) / r.Elapsed.Seconds()
}

func (r Result) String() string {
	return fmt.Sprintf("flood: %d payments written to %s in %s: %.0f payments/s",
		r.Written, schemas.Payments.Name, r.Elapsed.Round(time.Millisecond), r.Rate())
}

// Flood writes opts.N valid payments to payment-successful as fast as the
// producer goes, keyed by user, and returns once every one is acknowledged.
// cl should be idempotent with acks from all in-sync replicas (kgo's
// defaults): then a retried batch is never written twice and exactly N
// records land.
func Flood(ctx context.Context, cl *kgo.Client, payments *schemas.Codec[schemas.PaymentSucceeded], opts Options, out io.Writer) (Result, error) {
	if opts.N <= 0 {
		return Result{}, fmt.Errorf("-n must be positive, is %d", opts.N)
	}
	if opts.Users <= 0 {
		opts.Users = 1000
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var acked atomic.Int64
	start := time.Now()

	stop := progress.Every(opts.Progress, func() {
		n := acked.Load()
		fmt.Fprintf(out, "flood: %d/%d acknowledged, %.0f/s\n", n, opts.N, float64(n)/time.Since(start).Seconds())
	})
	defer stop()

	rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), 0))
	for range opts.N {
		p := shoppers.Payment(rng, opts.Users)
		rec, err := payments.Record(&p)
		if err != nil {
			return Result{}, err
		}
		// Produce blocks while the client's buffer is full, which is
		// the back-pressure that keeps memory flat.
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				cancel(fmt.Errorf("payment not acknowledged: %w", err))
				return
			}
			acked.Add(1)
		})
		if ctx.Err() != nil {
			break
		}
	}
	if err := cl.Flush(ctx); err != nil && context.Cause(ctx) == nil {
		return Result{}, err
	}
	res := Result{Written: int(acked.Load()), Elapsed: time.Since(start)}
	if err := context.Cause(ctx); err != nil {
		return res, err
	}
	return res, nil
}
