// Command shop runs the shop: its four services, and on machines without
// Docker the embedded Kafka cluster and schema registry they need.
//
//	shop run        embedded cluster + registry + the four services (make run)
//	shop cluster    embedded cluster + registry only (make cluster)
//	shop services   the four services against KAFKA_BROKERS (make services)
//	shop payment|order|email|analytics   one service
//	shop topics     create the topics (as make topics does)
//	shop schemas    register the schemas (as make schemas does)
//	shop registry   the schema registry alone on REGISTRY_ADDR (127.0.0.1:8081)
//
// Configuration comes from the environment: KAFKA_BROKERS,
// SCHEMA_REGISTRY_URL, PORT, INSTANCE_ID, PROCESSING_DELAY, TXN_MAX_RECORDS
// and TXN_MAX_INTERVAL (the bounds of a transaction), LOG_LEVEL (debug,
// info, warn, error) and LOG_FORMAT (json or text).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/platform"
	"github.com/blackfriday-kafka/shop/services/shop"
)

var serviceNames = shop.Services

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	log := newLogger()
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1], log); err != nil {
		log.Error("shop failed", "command", os.Args[1], "err", err)
		fmt.Fprintln(os.Stderr, "shop "+os.Args[1]+":", err)
		os.Exit(1)
	}
}

const usage = `usage: shop <command>

  run        the embedded stack (3 Kafka brokers on 127.0.0.1:9092-9094, a schema
             registry on :8081, topics, schemas) and the four services on :8000-:8003
  cluster    the embedded stack alone
  services   the four services, against KAFKA_BROKERS and SCHEMA_REGISTRY_URL
  payment | order | email | analytics
             one service (PORT, INSTANCE_ID and PROCESSING_DELAY apply)
  topics     create the topics on KAFKA_BROKERS
  schemas    register the schemas with SCHEMA_REGISTRY_URL
  registry   the Confluent-compatible schema registry alone, on REGISTRY_ADDR
             (default 127.0.0.1:8081), for a Kafka cluster started another way

Each command that starts something prints one line starting "ready:" once it
is ready, and stops cleanly on Ctrl-C or SIGTERM.
`

func run(ctx context.Context, cmd string, log *slog.Logger) error {
	switch cmd {
	case "run", "cluster":
		stack, err := infra.StartEmbedded(ctx, infra.EmbeddedConfig{
			BrokerPorts:  []int{9092, 9093, 9094},
			RegistryAddr: "127.0.0.1:8081",
		})
		if err != nil {
			return err
		}
		defer stack.Close()
		log.Info("embedded stack started", "kafka", stack.BrokerList(), "registry", stack.RegistryURL)
		if cmd == "cluster" {
			fmt.Printf("ready: kafka=%s registry=%s\n", stack.BrokerList(), stack.RegistryURL)
			<-ctx.Done()
			return nil
		}
		os.Setenv("KAFKA_BROKERS", stack.BrokerList())
		os.Setenv("SCHEMA_REGISTRY_URL", stack.RegistryURL)
		return runServices(ctx, serviceNames, log, " kafka="+stack.BrokerList()+" registry="+stack.RegistryURL)
	case "registry":
		addr := os.Getenv("REGISTRY_ADDR")
		if addr == "" {
			addr = "127.0.0.1:8081"
		}
		srv, url, err := infra.StartRegistry(addr)
		if err != nil {
			return err
		}
		fmt.Printf("ready: registry=%s\n", url)
		<-ctx.Done()
		return srv.Shutdown(context.WithoutCancel(ctx))
	case "services":
		return runServices(ctx, serviceNames, log, "")
	case "topics":
		cfg, err := platform.FromEnv("")
		if err != nil {
			return err
		}
		if err := infra.CreateTopics(ctx, cfg.Brokers); err != nil {
			return err
		}
		fmt.Printf("topics: %s ready on %s\n", strings.Join(schemas.Topics, ", "), strings.Join(cfg.Brokers, ","))
		return nil
	case "schemas":
		cfg, err := platform.FromEnv("")
		if err != nil {
			return err
		}
		if err := infra.RegisterSchemas(ctx, cfg.RegistryURL); err != nil {
			return err
		}
		fmt.Printf("schemas: %d subjects registered with %s, compatibility BACKWARD\n", len(schemas.Topics), cfg.RegistryURL)
		return nil
	default:
		if slices.Contains(serviceNames, cmd) {
			return runServices(ctx, []string{cmd}, log, "")
		}
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// runServices starts the named services, prints "ready:" once each answers
// /readyz, and stops them all when ctx is cancelled or one fails.
func runServices(ctx context.Context, names []string, log *slog.Logger, extra string) error {
	cat, err := connectCatalog(ctx, log)
	if err != nil {
		return err
	}
	env, err := platform.FromEnv("")
	if err != nil {
		return err
	}
	s, err := shop.Start(ctx, cat, shop.Options{
		Services: names,
		Config: func(name string) (platform.Config, error) {
			cfg, err := platform.FromEnv(name)
			cfg.Logger = log
			return cfg, err
		},
		Tuning: env.Tuning, // TXN_MAX_RECORDS, TXN_MAX_INTERVAL
	})
	if err != nil {
		return err
	}
	if err := s.WaitReady(ctx); err != nil {
		if ctx.Err() != nil {
			return s.Wait()
		}
		return err
	}
	if slices.Contains(names, "analytics") {
		extra += " dashboard=" + dashboardURL(s.URL("analytics"))
	}
	fmt.Println(s.ReadyLine() + extra)
	return s.Wait()
}

// dashboardURL is the analytics dashboard as a person opens it:
// http://localhost:8003/ for http://127.0.0.1:8003.
func dashboardURL(analytics string) string {
	return strings.Replace(analytics, "127.0.0.1", "localhost", 1) + "/"
}

// connectCatalog registers the schemas, retrying while the registry is not up
// yet (services may start before it under Docker Compose).
func connectCatalog(ctx context.Context, log *slog.Logger) (*schemas.Catalog, error) {
	cfg, err := platform.FromEnv("")
	if err != nil {
		return nil, err
	}
	reg, err := schemas.NewRegistryClient(cfg.RegistryURL)
	if err != nil {
		return nil, err
	}
	for wait := time.Second; ; wait = min(2*wait, 10*time.Second) {
		cat, err := schemas.NewCatalog(ctx, reg)
		if err == nil {
			return cat, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		log.Warn("schema registry not ready, retrying", "url", cfg.RegistryURL, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

func newLogger() *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("LOG_LEVEL"))); err != nil && os.Getenv("LOG_LEVEL") != "" {
		fmt.Fprintf(os.Stderr, "LOG_LEVEL=%q is not debug, info, warn or error; using info\n", os.Getenv("LOG_LEVEL"))
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(os.Getenv("LOG_FORMAT"), "text") {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}
