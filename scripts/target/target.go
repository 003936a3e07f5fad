// Package target says where the shop runs, for the operators' tools in
// scripts/: the seed brokers and the schema registry. Defaults come from
// KAFKA_BROKERS and SCHEMA_REGISTRY_URL, read as the services read them,
// and a tool's --brokers and --registry flags override them.
package target

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/infra/access"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
)

// Target is a Kafka cluster and its schema registry.
type Target struct {
	Brokers     []string
	RegistryURL string
	// Config is the tools' configuration, as the admin: SECURE=1 and the
	// KAFKA_SASL_* credentials apply.
	Config config.Config
}

// FromEnv reads KAFKA_BROKERS and SCHEMA_REGISTRY_URL, and in secure mode
// the credentials, as the services do.
func FromEnv() Target {
	cfg, err := config.FromEnv(os.Getenv)
	if err != nil {
		badEnv("KAFKA_BROKERS", os.Getenv("KAFKA_BROKERS"), err.Error())
	}
	return Target{Brokers: cfg.Brokers, RegistryURL: cfg.RegistryURL, Config: cfg}
}

// Kafka are the options of a client of the target: its brokers, and the
// admin's credentials in secure mode.
func (t *Target) Kafka() []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(t.Brokers...)}, t.Config.Connect()...)
}

// Cluster is where chaos and bench run: the cluster KAFKA_BROKERS names,
// or without it an embedded cluster of their own on free ports; Close
// stops it.
func Cluster(ctx context.Context) (*infra.Cluster, error) {
	on := FromEnv()
	var secure *infra.Secure
	if on.Config.Secure {
		secure = &infra.Secure{Admin: on.Config.Connect(), Registry: on.Config.Registry()}
	}
	if os.Getenv("KAFKA_BROKERS") == "" { // an embedded cluster of its own
		on.Brokers = nil
		if secure != nil {
			secure = access.Stack(access.DevPassword)
		}
	}
	return infra.ConnectOrEmbed(ctx, on.Brokers, on.RegistryURL, secure)
}

// Flags adds --brokers and --registry to fs, defaulting to the environment.
// The returned target is filled in when fs is parsed.
func Flags(fs *flag.FlagSet) *Target {
	t := FromEnv()
	fs.Func("brokers", "seed brokers, comma-separated (env KAFKA_BROKERS; default "+strings.Join(t.Brokers, ",")+")", func(s string) error {
		t.Brokers = config.SplitBrokers(s)
		if len(t.Brokers) == 0 {
			return fmt.Errorf("no broker in %q", s)
		}
		return nil
	})
	fs.StringVar(&t.RegistryURL, "registry", t.RegistryURL, "schema registry URL (env SCHEMA_REGISTRY_URL)")
	return &t
}

// Registry is a client of the target's schema registry.
func (t *Target) Registry() (*sr.Client, error) {
	return schemas.NewRegistryClient(t.RegistryURL, t.Config.Registry()...)
}

// Usage makes fs print a synopsis and a description before its flags, so
// every tool answers --help the same way.
func Usage(fs *flag.FlagSet, synopsis, description string) {
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "usage: %s\n\n%s\n", synopsis, strings.TrimSpace(description))
		fmt.Fprintln(out, "\nflags:")
		fs.PrintDefaults()
	}
}

// Env is the environment variable name, or def when it is unset or empty.
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// EnvInt reads a whole number from the environment; a malformed one stops
// the tool with a message naming the variable.
func EnvInt(name string, def int) int {
	return envParsed(name, def, strconv.Atoi, "not a whole number")
}

// EnvDuration reads a Go duration (100ms, 2s) from the environment, as
// EnvInt does a number.
func EnvDuration(name string, def time.Duration) time.Duration {
	return envParsed(name, def, time.ParseDuration, "not a duration such as 100ms")
}

// envParsed reads name from the environment with parse, or is def when it
// is unset or empty; a value parse refuses stops the tool, saying why.
func envParsed[T any](name string, def T, parse func(string) (T, error), why string) T {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	x, err := parse(v)
	if err != nil {
		badEnv(name, v, why)
	}
	return x
}

func badEnv(name, value, why string) {
	fmt.Fprintf(os.Stderr, "%s=%q: %s\n", name, value, why)
	os.Exit(2)
}
