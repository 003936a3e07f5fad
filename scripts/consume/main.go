// Command consume is the shop's console consumer: it prints the records of
// one or more topics, one JSON object per line, with their Avro values
// decoded through the schema registry.
//
//	go run ./scripts/consume --topic payment-successful --from-beginning -n 10
//	go run ./scripts/consume --topic dlq-payment --from-beginning | jq .error_class
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/blackfriday-kafka/shop/scripts/console"
	"github.com/blackfriday-kafka/shop/scripts/target"
)

const description = `
Prints each record of the topics as one JSON object per line: topic,
partition, offset, timestamp, key, headers, schema_id and the value decoded
with the schema that wrote it (fetched from the registry by the ID in the
record's Confluent header). Dead letters also show error_class, error and
the original record's bytes (original_value, and original_text when it is
text). A value that does not decode is printed as bytes, with decode_error
naming its class as the DLQ would (bad-magic-byte, unknown-schema-id,
wrong-subject, avro-decode, empty-value).

It reads read_committed, as every service does, so records of aborted or
still open transactions never show; --read-uncommitted shows them.`

func main() {
	fs := flag.NewFlagSet("consume", flag.ExitOnError)
	target.Usage(fs, "consume --topic TOPIC [--topic TOPIC...] [flags]", description)
	t := target.Flags(fs)
	var (
		opts   console.ConsumeOptions
		topics []string
		bytes  string
	)
	fs.Func("topic", "topic to read (repeat for several)", func(s string) error { topics = append(topics, s); return nil })
	fs.BoolVar(&opts.FromBeginning, "from-beginning", false, "start at the beginning of the log (default: only new records)")
	fs.StringVar(&opts.Group, "group", "", "read as a member of this consumer group and commit what is printed")
	fs.BoolVar(&opts.ReadUncommitted, "read-uncommitted", false, "also show records of open and aborted transactions")
	fs.BoolVar(&opts.Raw, "raw", false, "print values as bytes, without decoding them")
	fs.StringVar(&bytes, "bytes", "base64", "how bytes print: base64 or hex")
	fs.IntVar(&opts.Max, "n", 0, "stop after this many records (0: no limit)")
	fs.DurationVar(&opts.Idle, "timeout", 0, "stop when no record arrives for this long, such as 5s (0: wait for ever)")
	fs.Parse(os.Args[1:])
	if len(topics) == 0 {
		fs.Usage()
		fmt.Fprintln(os.Stderr, "\nconsume: --topic is required")
		os.Exit(2)
	}
	var err error
	if opts.Bytes, err = console.ParseBytes(bytes, console.Base64, console.Hex); err != nil {
		fail(err)
	}
	opts.Brokers, opts.Connect, opts.Topics = t.Brokers, t.Config.Connect(), topics

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reg, err := t.Registry()
	if err != nil {
		fail(err)
	}
	n, err := console.Consume(ctx, reg, opts, os.Stdout)
	fmt.Fprintf(os.Stderr, "consume: %d records\n", n)
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "consume:", err)
	os.Exit(1)
}
