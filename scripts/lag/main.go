// Command lag shows how far each consumer group is behind, per topic and
// partition, with its members and their partitions: the tutorial's lag
// monitor (make lag; MONITOR=1 make lag refreshes every 2 s).
//
//	go run ./scripts/lag
//	go run ./scripts/lag --group order-service-group --monitor
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/scripts/target"
	"github.com/blackfriday-kafka/shop/txn/lag"
)

const description = `
For each consumer group (every group on the cluster unless --group names
some): its state, its members and the partitions each holds, and per topic
and partition the committed offset, the last stable offset (LSO), the high
watermark (HWM) and the lag.

LAG is LSO minus the committed offset: the records a read_committed
consumer, as every service of the shop is, can still read. Records of a
transaction still open sit between the LSO and the HWM and are not lag
until it commits. kafka-consumer-groups and kadm count against the HWM; the
two agree whenever no transaction is open. On a topic written in
transactions (order-created, email-sent, the DLQs) a group that has read
everything may show a lag of 1 per partition: the commit marker of the last
transaction takes an offset that no consumer ever receives.

With --monitor it refreshes every --interval and shows each group's
consumption rate since the previous refresh.`

func main() {
	fs := flag.NewFlagSet("lag", flag.ExitOnError)
	target.Usage(fs, "lag [--group GROUP...] [--monitor]", description)
	t := target.Flags(fs)
	var groups []string
	fs.Func("group", "a consumer group to show (repeatable; default every group)", func(s string) error {
		groups = append(groups, s)
		return nil
	})
	monitor := fs.Bool("monitor", os.Getenv("MONITOR") == "1", "refresh until Ctrl-C (env MONITOR=1)")
	interval := fs.Duration("interval", 2*time.Second, "time between refreshes with --monitor")
	fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cl, err := kgo.NewClient(t.Kafka()...)
	if err != nil {
		fail(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	var prev *lag.Report
	for {
		askCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rep, err := lag.Collect(askCtx, adm, groups...)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil && !*monitor {
			fail(err)
		}
		if *monitor {
			fmt.Print("\033[H\033[2J") // clear the terminal
			fmt.Printf("lag on %v at %s (every %s, Ctrl-C to stop)\n\n", t.Brokers, rep.At.Format(time.TimeOnly), *interval)
		}
		if err != nil {
			fmt.Println("lag:", err)
		} else {
			Print(os.Stdout, rep, prev)
			prev = &rep
		}
		if !*monitor {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(*interval):
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "lag:", err)
	os.Exit(1)
}
