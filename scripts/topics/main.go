// Command topics creates, lists, describes and deletes Kafka topics: the
// part of Kafka's kafka-topics.sh the tutorial uses, for the shop.
//
//	go run ./scripts/topics create                 the shop's topics (make topics)
//	go run ./scripts/topics create -partitions 6 test
//	go run ./scripts/topics list
//	go run ./scripts/topics describe               leaders, replicas, ISR, configs, offsets
//	go run ./scripts/topics delete test
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

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/scripts/target"
)

const description = `
commands:
  create [TOPIC...]    create the topics; without names, the shop's topics
                       (3 partitions, replication 3 and min.insync.replicas=2
                       on a 3-broker cluster). Idempotent: an existing topic is
                       left as it is.
  list                 every topic with its partition count and replication factor
  describe [TOPIC...]  per topic (the shop's without names): the configs set on
                       it, and per partition the leader, replicas, in-sync
                       replicas, offline replicas and the offsets the log spans
  delete TOPIC...      delete the named topics (names required)

Flags go between the command and the topic names.`

func main() {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		fs := flag.NewFlagSet("topics", flag.ExitOnError)
		target.Usage(fs, "topics <create|list|describe|delete> [flags] [TOPIC...]", description)
		target.Flags(fs)
		fs.Parse(os.Args[1:])
		fs.Usage()
		os.Exit(2)
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet("topics "+cmd, flag.ExitOnError)
	target.Usage(fs, "topics "+cmd+" [flags] [TOPIC...]", description)
	t := target.Flags(fs)
	var (
		nt       NewTopics
		configs  = map[string]*string{}
		all      bool
		internal bool
		timeout  time.Duration
	)
	partitions := fs.Int("partitions", 0, "create: partitions of the named topics (default 3)")
	replicas := fs.Int("replication-factor", 0, "create: replicas of the named topics (default 3, or the broker count if smaller)")
	fs.Func("config", "create: a topic config as key=value (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("%q is not key=value", s)
		}
		configs[k] = &v
		return nil
	})
	fs.BoolVar(&all, "all-configs", false, "describe: every config, not only those set on the topic")
	fs.BoolVar(&internal, "internal", false, "list: internal topics too")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	fs.Parse(os.Args[2:])
	nt.Partitions, nt.Replicas, nt.Configs = int32(*partitions), int16(*replicas), configs

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl, err := kgo.NewClient(t.Kafka()...)
	if err != nil {
		fail(cmd, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	switch cmd {
	case "create":
		err = Create(ctx, adm, t.Brokers, fs.Args(), nt, os.Stdout)
	case "list":
		err = List(ctx, adm, internal, os.Stdout)
	case "describe":
		err = Describe(ctx, adm, fs.Args(), all, os.Stdout)
	case "delete":
		err = Delete(ctx, adm, fs.Args(), os.Stdout)
	default:
		fs.Usage()
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fail(cmd, err)
	}
}

func fail(cmd string, err error) {
	fmt.Fprintf(os.Stderr, "topics %s: %v\n", cmd, err)
	os.Exit(1)
}
