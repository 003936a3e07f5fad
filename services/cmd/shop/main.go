// Command shop runs the shop: its four services, and on machines without
// Docker the embedded Kafka cluster and schema registry they need.
//
//	shop run        embedded cluster + registry + mail server + the four services (make run)
//	shop cluster    embedded cluster + registry + mail server only (make cluster)
//	shop services   the four services against KAFKA_BROKERS (make services)
//	shop payment|order|email|analytics   one service
//	shop topics     create the topics (as make topics does)
//	shop schemas    register the schemas (as make schemas does)
//	shop registry   the schema registry alone on REGISTRY_ADDR (127.0.0.1:8081), its state on KAFKA_BROKERS
//
// The environment is read once, here (package config says what it holds).
package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/infra/access"
	"github.com/blackfriday-kafka/shop/infra/mailbox"
	"github.com/blackfriday-kafka/shop/infra/registry"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/shop"
)

const usage = `usage: shop <command>

  run        the embedded stack (3 Kafka brokers on 127.0.0.1:9092-9094, a schema
             registry on :8081, topics, schemas, a mail server on :1025 with its
             inbox on :8025 unless SMTP_ADDR is set) and the four services on :8000-:8003
  cluster    the embedded stack alone
  services   the four services, against KAFKA_BROKERS and SCHEMA_REGISTRY_URL
  payment | order | email | analytics
             one service (PORT, INSTANCE_ID and PROCESSING_DELAY apply)
  topics     create the topics on KAFKA_BROKERS
  schemas    register the schemas with SCHEMA_REGISTRY_URL
  acls       create the principals' ACLs on KAFKA_BROKERS (secure mode), and print them
  principals print the principals of secure mode, one a line (for make kafka-up)
  registry   the Confluent-compatible schema registry alone, on REGISTRY_ADDR
             (default 127.0.0.1:8081), its state in the _schemas topic of
             KAFKA_BROKERS, a Kafka cluster started another way

Each command that starts something prints one line starting "ready:" once it
is ready, and stops cleanly on Ctrl-C or SIGTERM.
`

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd := os.Args[1]
	cfg, err := config.FromEnv(os.Getenv, servicesOf(cmd)...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shop "+cmd+":", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cmd, cfg); err != nil {
		if !errors.Is(err, infra.ErrDataMadeOpen) { // the operator's choice, in one line below
			cfg.Logger.Error("shop failed", "command", cmd, "err", err)
		}
		fmt.Fprintln(os.Stderr, "shop "+cmd+":", err)
		os.Exit(1)
	}
}

// servicesOf are the services a command runs, whose settings it checks.
func servicesOf(cmd string) []string {
	switch {
	case cmd == "run" || cmd == "services":
		return config.Services
	case slices.Contains(config.Services, cmd):
		return []string{cmd}
	}
	return nil
}

func run(ctx context.Context, cmd string, cfg config.Config) error {
	switch cmd {
	case "run", "cluster":
		return runStack(ctx, cmd, cfg)
	case "registry":
		srv, err := startRegistry(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Printf("ready: registry=%s kafka=%s%s\n", srv.URL, strings.Join(cfg.Brokers, ","), secureLine(cfg))
		<-ctx.Done()
		return srv.Shutdown(context.WithoutCancel(ctx))
	case "topics":
		if err := infra.CreateTopics(ctx, cfg.Brokers, cfg.Connect()...); err != nil {
			return err
		}
		fmt.Printf("topics: %s ready on %s\n", strings.Join(schemas.TopicNames(), ", "), strings.Join(cfg.Brokers, ","))
		return nil
	case "principals":
		for _, p := range access.Principals() {
			fmt.Println(p)
		}
		return nil
	case "acls":
		return applyACLs(ctx, cfg)
	case "schemas":
		if err := infra.RegisterSchemas(ctx, cfg.RegistryURL, cfg.Registry()...); err != nil {
			return err
		}
		fmt.Printf("schemas: %d subjects registered with %s, compatibility BACKWARD or stricter\n", len(schemas.Topics()), cfg.RegistryURL)
		return nil
	}
	if names := servicesOf(cmd); names != nil {
		return runServices(ctx, cfg, names, secureLine(cfg))
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// startRegistry starts `shop registry` on cfg.RegistryAddr: with basic
// auth for the users of the configuration when it has any, which secure
// mode needs; its own Kafka client is the admin's in secure mode. The dev
// stacks' passwords are never taken for granted here: make kafka-up
// writes them to the file it passes.
func startRegistry(ctx context.Context, cfg config.Config) (*infra.RegistryServer, error) {
	if cfg.Secure && len(cfg.RegistryUsers) == 0 {
		return nil, errors.New("SECURE=1: the registry needs its users: REGISTRY_USERS_FILE (a file of user:password lines) or REGISTRY_USERS (user:password,…)")
	}
	var opts []func(*registry.Config)
	if cfg.Secure {
		opts = append(opts, func(c *registry.Config) { c.Connect = cfg.Connect() })
	}
	if len(cfg.RegistryUsers) > 0 {
		users, writers := maps.Clone(cfg.RegistryUsers), slices.Clone(cfg.RegistryWriters)
		opts = append(opts, func(c *registry.Config) { c.Users, c.Writers = users, writers })
	}
	return infra.StartRegistry(ctx, cfg.RegistryAddr, cfg.Brokers, opts...)
}

// runStack runs the embedded stack, and for run the four services on it.
func runStack(ctx context.Context, cmd string, cfg config.Config) error {
	if cfg.Fresh {
		if err := os.RemoveAll(cfg.DataDir); err != nil {
			return err
		}
		cfg.Logger.Info("starting empty: removed the data of the last run", "dir", cfg.DataDir)
		// The services' state on disk is a copy of the old cluster's: a
		// new cluster would find it stale and rebuild it anyway.
		for _, name := range servicesOf(cmd) {
			if err := os.RemoveAll(cfg.StateDirOf(name)); err != nil {
				return err
			}
		}
	}
	var secure *infra.Secure
	if cfg.Secure {
		secure = access.Stack(access.DevPassword)
	}
	stack, err := infra.StartEmbedded(ctx, infra.EmbeddedConfig{
		BrokerPorts:  []int{9092, 9093, 9094},
		RegistryAddr: "127.0.0.1:8081",
		DataDir:      cfg.DataDir,
		Secure:       secure,
	})
	if err != nil {
		return err
	}
	defer stack.Close()
	cfg.Logger.Info("embedded stack started", "kafka", stack.BrokerList(), "registry", stack.RegistryURL, "data", cfg.DataDir, "secure", cfg.Secure)
	mail, err := ownMailServer(cfg)
	if err != nil {
		return err
	}
	if mail != nil {
		defer mail.Close()
		cfg.SMTPAddr = mail.SMTPAddr
	}
	if cmd == "cluster" {
		fmt.Printf("ready: kafka=%s registry=%s%s%s\n", stack.BrokerList(), stack.RegistryURL, inboxLine(mail), secureLine(cfg))
		<-ctx.Done()
		return nil
	}
	cfg.Brokers, cfg.RegistryURL = stack.Brokers, stack.RegistryURL
	return runServices(ctx, cfg, servicesOf(cmd), " kafka="+stack.BrokerList()+" registry="+stack.RegistryURL+inboxLine(mail)+secureLine(cfg))
}

// applyACLs creates the principals' ACLs, and prints them.
func applyACLs(ctx context.Context, cfg config.Config) error {
	cl, err := kgo.NewClient(cfg.Kafka()...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := access.Apply(ctx, kadm.NewClient(cl)); err != nil {
		return err
	}
	_ = access.Print(os.Stdout)
	fmt.Printf("acls: the principals' ACLs are on %s\n", strings.Join(cfg.Brokers, ","))
	return nil
}

// runServices starts the named services, prints "ready:" once each answers
// /readyz, and stops them all when ctx is cancelled or one fails.
func runServices(ctx context.Context, cfg config.Config, names []string, extra string) error {
	s, err := shop.Start(ctx, cfg, nil, shop.Options{Services: names})
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

// ownMailServer starts the embedded stack's mail server, SMTP on
// 127.0.0.1:1025 and its inbox on :8025, unless SMTP_ADDR names another:
// then the services deliver there and none is started.
func ownMailServer(cfg config.Config) (*mailbox.Server, error) {
	if !cfg.OwnSMTP {
		cfg.Logger.Info("delivering to the mail server of SMTP_ADDR; starting none", "smtp", cfg.SMTPAddr)
		return nil, nil
	}
	mail, err := mailbox.Start(mailbox.Config{SMTPAddr: "127.0.0.1:1025", HTTPAddr: "127.0.0.1:8025", Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("%w (a mail server already there? SMTP_ADDR=localhost:1025 delivers to it instead)", err)
	}
	cfg.Logger.Info("mail server started", "smtp", mail.SMTPAddr, "inbox", mail.URL)
	return mail, nil
}

// inboxLine is the part of the ready line that names the mail server.
func inboxLine(mail *mailbox.Server) string {
	if mail == nil {
		return ""
	}
	return " smtp=" + mail.SMTPAddr + " inbox=" + strings.Replace(mail.URL, "127.0.0.1", "localhost", 1) + "/"
}

// secureLine says, in a ready line, that the stack is secure (and never
// with what credentials).
func secureLine(cfg config.Config) string {
	if !cfg.Secure {
		return ""
	}
	return " security=SASL/SCRAM-SHA-512+ACLs"
}

// dashboardURL is the analytics dashboard as a person opens it:
// http://localhost:8003/ for http://127.0.0.1:8003.
func dashboardURL(analytics string) string {
	return strings.Replace(analytics, "127.0.0.1", "localhost", 1) + "/"
}
