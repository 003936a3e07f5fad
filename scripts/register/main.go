// Command register registers the shop's Avro schemas with the schema
// registry (make schemas), or checks first whether they would be accepted.
//
//	go run ./scripts/register                      every schema of this build (idempotent)
//	go run ./scripts/register --check              would the registry accept them? changes nothing
//	go run ./scripts/register --topic payment-successful --file schemas/evolution/payment_succeeded_v2.avsc
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/blackfriday-kafka/shop/scripts/target"
)

const description = `
Registers each schema under its topic's subject (TopicNameStrategy:
<topic>-value) with compatibility BACKWARD. A schema the subject holds
already keeps its version and ID, so running it twice changes nothing.

Before registering, it asks the registry about every schema: already
registered, new subject, or compatible with the subject's latest version
(the registry's own compatibility check). If one is incompatible nothing is
registered and it exits 1, with the registry's reasons. --check stops after
asking.

Without --file it takes the .avsc files embedded in this build (schemas/);
--file and --topic name one other schema, such as a new version to try.`

func main() {
	fs := flag.NewFlagSet("register", flag.ExitOnError)
	target.Usage(fs, "register [--check] [--topic TOPIC --file FILE.avsc]", description)
	t := target.Flags(fs)
	check := fs.Bool("check", false, "only tell whether the schemas are registered or compatible; change nothing")
	file := fs.String("file", "", "an .avsc file to register instead of this build's schemas (needs --topic)")
	topic := fs.String("topic", "", "the topic whose subject --file goes under, such as payment-successful")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	fs.Parse(os.Args[1:])

	var (
		locals []Local
		err    error
	)
	switch {
	case *file != "" && *topic != "":
		text, readErr := os.ReadFile(*file)
		if readErr != nil {
			fail(readErr)
		}
		locals = []Local{{Topic: *topic, Text: string(text), From: *file}}
	case *file != "" || *topic != "":
		fail(fmt.Errorf("--file and --topic go together"))
	default:
		if locals, err = Build(); err != nil {
			fail(err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	reg, err := t.Registry()
	if err != nil {
		fail(err)
	}
	verdicts, err := Run(ctx, reg, locals, *check, os.Stdout)
	if err != nil {
		fail(err)
	}
	if *check {
		fmt.Printf("check: %d schemas registered or compatible with %s\n", len(verdicts), t.RegistryURL)
		return
	}
	fmt.Printf("schemas: %d subjects registered with %s, compatibility BACKWARD\n", len(verdicts), t.RegistryURL)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "register:", err)
	os.Exit(1)
}
