// Command produce is the shop's console producer: it reads JSON lines on
// stdin and writes each as one Avro record in the Confluent wire format, or
// with --raw as the bytes typed (hand-made poison).
//
//	echo '{"user_id": 42, "cart": [{"name": "MacBook", "unit_price_cents": 199900, "quantity": 1}], "total_cents": 199900}' |
//	    go run ./scripts/produce --topic payment-successful
//	echo '{"user_id": 42, "oops"' | go run ./scripts/produce --topic payment-successful --raw
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
Reads one JSON value per line on stdin and writes it to the topic, encoded
with an Avro schema of the topic's subject (<topic>-value) and framed with
its schema ID, through an idempotent producer with acks from all in-sync
replicas. Fields are named as in the .avsc files (money in cents,
timestamps in RFC 3339 or milliseconds). A field the line leaves out takes
the schema's default; a missing uuid gets a new one and a missing timestamp
gets now; anything else missing, or a field the schema does not know, is an
error, and then nothing is sent.

Records are keyed by the line's user_id, as the services key them, unless
--key says otherwise. Prints one JSON line per record sent (line, topic,
partition, offset, key), then a summary on stderr.`

func main() {
	fs := flag.NewFlagSet("produce", flag.ExitOnError)
	target.Usage(fs, "produce --topic TOPIC [flags] < lines.json", description)
	t := target.Flags(fs)
	var (
		opts  console.ProduceOptions
		bytes string
	)
	fs.StringVar(&opts.Topic, "topic", "", "topic to write to")
	fs.StringVar(&opts.Schema, "schema", "latest", "writer schema: latest, build (this build's .avsc), a subject version number, or an .avsc file to register and use")
	fs.BoolVar(&opts.Raw, "raw", false, "send each line's bytes as they are, not encoded (an empty line sends no value)")
	fs.StringVar(&bytes, "bytes", "text", "how bytes are spelled in the input, raw lines and Avro bytes fields: text, base64 or hex")
	fs.StringVar(&opts.Key, "key", "", "key of every record (default: the line's user_id, if any)")
	fs.Parse(os.Args[1:])
	if opts.Topic == "" {
		fs.Usage()
		fmt.Fprintln(os.Stderr, "\nproduce: --topic is required")
		os.Exit(2)
	}
	var err error
	if opts.Bytes, err = console.ParseBytes(bytes, console.Text, console.Base64, console.Hex); err != nil {
		fail(err)
	}
	opts.Brokers, opts.Connect = t.Brokers, t.Config.Connect()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reg, err := t.Registry()
	if err != nil {
		fail(err)
	}
	res, err := console.Produce(ctx, reg, opts, os.Stdin, os.Stdout)
	if err != nil {
		fail(err)
	}
	fmt.Fprintln(os.Stderr, res.Describe(opts.Topic))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "produce:", err)
	os.Exit(1)
}
