// Package config is the shop's configuration: read from the environment
// once, in main, into one Config that is passed down. Nothing else in the
// shop reads the environment.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/blackfriday-kafka/shop/txn/stage"
)

// The services, in the order of the flow, and their HTTP ports.
var (
	Services = []string{"payment", "order", "email", "analytics"}
	Ports    = map[string]int{"payment": 8000, "order": 8001, "email": 8002, "analytics": 8003}
)

// Defaults of the environment: the ports of make run, make cluster and make up.
const (
	DefaultBrokers     = "localhost:9092,localhost:9093,localhost:9094"
	DefaultRegistryURL = "http://localhost:8081"
	DefaultSMTPAddr    = "localhost:1025"
)

// Config is what the shop's commands are configured with.
type Config struct {
	Brokers     []string // KAFKA_BROKERS
	RegistryURL string   // SCHEMA_REGISTRY_URL

	// Addr is where a service listens: from PORT when one service runs;
	// empty means the service's own port (Ports). Tests set 127.0.0.1:0,
	// a free port for each.
	Addr       string
	InstanceID string // INSTANCE_ID: the instance's name in its group, part of its transactional ID

	ProcessingDelay time.Duration // PROCESSING_DELAY: added per payment in the order service
	AtLeastOnce     bool          // DELIVERY=at-least-once: order and email without transactions, the control
	MaxRecords      int           // TXN_MAX_RECORDS; 0 takes the engine's default
	MaxInterval     time.Duration // TXN_MAX_INTERVAL; 0 takes the engine's default
	// StallAfter (STALL_AFTER, default 1m) is how long a stage may retry
	// the same records before /healthz, the metrics, the log and the
	// dashboard call it stalled.
	StallAfter time.Duration
	// IdempotencyWindow (IDEMPOTENCY_WINDOW, default 24h) is how long the
	// payment service keeps the answer to an Idempotency-Key, and the order
	// service the payment IDs it has turned into orders.
	IdempotencyWindow time.Duration
	// CheckpointEvery (CHECKPOINT_EVERY, default 10s) is how often a view
	// saves a checkpoint while records come; NoCheckpoints (CHECKPOINT_EVERY=0)
	// makes views read their topics from the start at every start.
	CheckpointEvery time.Duration
	NoCheckpoints   bool

	RegistryAddr string // REGISTRY_ADDR: where `shop registry` listens
	// RegistryUsers (REGISTRY_USERS_FILE or REGISTRY_USERS) are the users
	// `shop registry` asks for with basic auth; secure mode needs them.
	// RegistryWriters (REGISTRY_WRITERS, default admin) may write.
	RegistryUsers   Users
	RegistryWriters []string

	// Secure (SECURE=1) is the secure mode: SASL to Kafka, HTTP basic
	// auth to the project's registry. SASL holds what the environment
	// says (KAFKA_SASL_MECHANISM, KAFKA_USERNAME, KAFKA_PASSWORD); what it
	// leaves empty takes the defaults of Principal: SCRAM-SHA-512, the
	// principal's name, its dev password.
	Secure bool
	SASL   Credentials
	// Principal is who a service or tool is: the service's name, set by
	// shop.Start for each service; "" is the admin (the tools).
	Principal string

	// SMTPAddr (SMTP_ADDR, host:port, default localhost:1025, the dev
	// stack's mail server) is where the email service delivers the
	// confirmations; empty (a Config built in code, a test's) delivers
	// none, the emails stay on the outbox. OwnSMTP is true when SMTP_ADDR
	// was not set: `shop run` and `shop cluster` then start a mail server
	// of their own on it. SMTPAuth (SMTP_USERNAME, SMTP_PASSWORD), when
	// both are set, authenticates with AUTH PLAIN, over TLS or to a
	// loopback address, or in clear with SMTPPlainAuth (SMTP_PLAIN_AUTH=1).
	SMTPAddr      string
	OwnSMTP       bool
	SMTPAuth      Credentials
	SMTPPlainAuth bool

	// PaymentURLs (PAYMENT_URLS, comma-separated, default
	// http://localhost:8000) are the payment instances whose admission
	// (admitted, shed, the bound) the analytics dashboard shows, read from
	// their /metrics. When payment runs in the same process as analytics,
	// it is that instance.
	PaymentURLs []string

	// AnalyticsURL (ANALYTICS_URL) is the base URL an analytics instance
	// advertises to the others of its group, which ask it for the figures
	// of its partitions; empty means http://127.0.0.1:<its port>, enough
	// when the instances share a host.
	AnalyticsURL string

	// StateDir (STATE_DIR) is where an instance keeps its state on disk:
	// the payment service's ledger of Idempotency-Keys, the order step's
	// memory. Deleting it loses nothing: it is rebuilt from Kafka. Empty
	// means .run/state/<service>-<instance>. StateDirShared says that
	// the services of the process share STATE_DIR (make run and make
	// services run four): each then keeps its own under it, in
	// <service>-<instance>, as two instances must never share one.
	StateDir       string
	StateDirShared bool
	// StateCacheMB (STATE_CACHE_MB, default 32) is the block cache of an
	// instance's state on disk, in MiB: the RAM that keeps its hot part.
	StateCacheMB int

	// OrderKillAt (ORDER_KILL_AT) is for the kill tests only: the point of
	// a transaction where the order process kills itself with SIGKILL
	// (order.KillPoints). Empty, as in production, it never does.
	OrderKillAt string

	// DataDir (DATA_DIR, default .run/embedded) is where `shop run` and
	// `shop cluster` keep the embedded cluster's data; Fresh (FRESH=1)
	// deletes it first.
	DataDir string
	Fresh   bool

	Logger *slog.Logger // from LOG_LEVEL and LOG_FORMAT
}

// ListenAddr is where service listens.
func (c Config) ListenAddr(service string) string {
	if c.Addr != "" {
		return c.Addr
	}
	return ":" + strconv.Itoa(Ports[service])
}

// Checkpoints is how often views save a checkpoint, or 0 for never.
func (c Config) Checkpoints() time.Duration {
	switch {
	case c.NoCheckpoints:
		return 0
	case c.CheckpointEvery > 0:
		return c.CheckpointEvery
	}
	return 10 * time.Second
}

// Stage is how the exactly-once stages of the services run.
func (c Config) Stage() stage.Options {
	return stage.Options{
		Brokers:     c.Brokers,
		Connect:     c.Connect(),
		InstanceID:  c.InstanceID,
		Logger:      c.Log(),
		AtLeastOnce: c.AtLeastOnce,
		MaxRecords:  c.MaxRecords,
		MaxInterval: c.MaxInterval,
		StallAfter:  c.StallAfter,
		Checkpoints: c.Checkpoints(),
	}
}

// Window is IdempotencyWindow, 24 hours when unset.
func (c Config) Window() time.Duration {
	if c.IdempotencyWindow > 0 {
		return c.IdempotencyWindow
	}
	return 24 * time.Hour
}

// StateDirOf is the directory of service's instance's state on disk.
func (c Config) StateDirOf(service string) string {
	own := service + "-" + c.InstanceID
	switch {
	case c.StateDir == "":
		return filepath.Join(".run", "state", own)
	case c.StateDirShared:
		return filepath.Join(c.StateDir, own)
	}
	return c.StateDir
}

// StateCache is the block cache of an instance's state on disk, in bytes:
// StateCacheMB, 32 MiB when unset.
func (c Config) StateCache() int64 {
	if c.StateCacheMB > 0 {
		return int64(c.StateCacheMB) << 20
	}
	return 32 << 20
}

// Log is the logger, slog.Default when none was set.
func (c Config) Log() *slog.Logger {
	if c.Logger == nil {
		return slog.Default()
	}
	return c.Logger
}

// FromEnv reads the configuration of a command that runs services (none for
// commands such as topics and schemas, which only need the cluster). A
// variable is checked only by the commands that use it: a bad
// PROCESSING_DELAY fails `shop order`, not `shop topics`.
func FromEnv(getenv func(string) string, services ...string) (Config, error) {
	e := env(getenv)
	cfg, err := e.cluster()
	if err != nil {
		return cfg, err
	}
	if err := e.services(&cfg, services); err != nil {
		return cfg, err
	}
	if !slices.Contains(services, "order") && !slices.Contains(services, "email") {
		return cfg, nil
	}
	return cfg, e.stages(&cfg)
}

// env is the environment, as getenv reads it.
type env func(string) string

// get is the value of name, or def when it is unset or empty.
func (e env) get(name, def string) string {
	if v := e(name); v != "" {
		return v
	}
	return def
}

// duration is the Go duration in name, if set, checked by ok.
func (e env) duration(name string, into *time.Duration, ok func(time.Duration) bool, want string) error {
	v := e(name)
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || !ok(d) {
		return fmt.Errorf("%s=%q: want %s", name, v, want)
	}
	*into = d
	return nil
}

func positive(d time.Duration) bool { return d > 0 }

func notNegative(d time.Duration) bool { return d >= 0 }

// isHTTP says whether u is an http or https URL.
func isHTTP(u string) bool {
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")
}

// cluster reads what every command needs: the cluster, the registry, the
// credentials, the mail server and the logger.
func (e env) cluster() (Config, error) {
	cfg := Config{
		Brokers:      SplitBrokers(e.get("KAFKA_BROKERS", DefaultBrokers)),
		RegistryURL:  e.get("SCHEMA_REGISTRY_URL", DefaultRegistryURL),
		InstanceID:   e.get("INSTANCE_ID", "1"),
		RegistryAddr: e.get("REGISTRY_ADDR", "127.0.0.1:8081"),
		DataDir:      e.get("DATA_DIR", ".run/embedded"),
		Fresh:        e("FRESH") == "1",
		Secure:       e("SECURE") == "1",
		SASL:         Credentials{Mechanism: e("KAFKA_SASL_MECHANISM"), Username: e("KAFKA_USERNAME"), Password: e("KAFKA_PASSWORD")},
	}
	if _, ok := mechanisms[cfg.SASL.Mechanism]; !ok && cfg.SASL.Mechanism != "" {
		return cfg, fmt.Errorf("KAFKA_SASL_MECHANISM=%q: want SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", cfg.SASL.Mechanism)
	}
	if (cfg.SASL.Username == "") != (cfg.SASL.Password == "") {
		return cfg, fmt.Errorf("KAFKA_USERNAME and KAFKA_PASSWORD go together: give both, or neither for the dev principals")
	}
	if len(cfg.Brokers) == 0 {
		return cfg, fmt.Errorf("KAFKA_BROKERS=%q: no broker", e("KAFKA_BROKERS"))
	}
	cfg.SMTPAddr, cfg.OwnSMTP = e.get("SMTP_ADDR", DefaultSMTPAddr), e("SMTP_ADDR") == ""
	cfg.SMTPAuth = Credentials{Mechanism: "PLAIN", Username: e("SMTP_USERNAME"), Password: e("SMTP_PASSWORD")}
	if (cfg.SMTPAuth.Username == "") != (cfg.SMTPAuth.Password == "") {
		return cfg, fmt.Errorf("SMTP_USERNAME and SMTP_PASSWORD go together: give both, or neither")
	}
	cfg.SMTPPlainAuth = e("SMTP_PLAIN_AUTH") == "1"
	var err error
	if cfg.RegistryUsers, err = registryUsers(e); err != nil {
		return cfg, err
	}
	cfg.RegistryWriters = SplitBrokers(e("REGISTRY_WRITERS"))
	if _, port, err := net.SplitHostPort(cfg.SMTPAddr); err != nil || port == "" {
		return cfg, fmt.Errorf("SMTP_ADDR=%q: want host:port, such as localhost:1025", cfg.SMTPAddr)
	}
	logger, err := newLogger(e("LOG_LEVEL"), e("LOG_FORMAT"))
	if err != nil {
		return cfg, err
	}
	cfg.Logger = logger
	return cfg, nil
}

// services reads what the services of a command use: where one listens,
// the stall bound, the checkpoints, the window, the order step's delay and
// the payment instances analytics watches.
func (e env) services(cfg *Config, services []string) error {
	uses := func(s string) bool { return slices.Contains(services, s) }
	if len(services) > 0 {
		if err := e.duration("STALL_AFTER", &cfg.StallAfter, positive, "a positive Go duration, such as 1m"); err != nil {
			return err
		}
	}
	if port := e("PORT"); port != "" && len(services) == 1 {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("PORT=%q: not a port number", port)
		}
		cfg.Addr = ":" + port
	}
	if v := e("CHECKPOINT_EVERY"); v != "" && len(services) > 0 {
		if err := e.duration("CHECKPOINT_EVERY", &cfg.CheckpointEvery, notNegative, "a Go duration, such as 10s, or 0 for none"); err != nil {
			return err
		}
		cfg.NoCheckpoints = cfg.CheckpointEvery == 0
	}
	if uses("payment") || uses("order") {
		if err := e.duration("IDEMPOTENCY_WINDOW", &cfg.IdempotencyWindow, positive, "a positive Go duration, such as 24h"); err != nil {
			return err
		}
	}
	if uses("payment") || uses("order") {
		cfg.StateDir, cfg.StateDirShared = e("STATE_DIR"), e("STATE_DIR") != "" && len(services) > 1
		if v := e("STATE_CACHE_MB"); v != "" {
			mb, err := strconv.Atoi(v)
			if err != nil || mb < 1 || mb > 1<<20 {
				return fmt.Errorf("STATE_CACHE_MB=%q: want a number of MiB from 1, such as 32", v)
			}
			cfg.StateCacheMB = mb
		}
	}
	if uses("order") {
		if err := e.duration("PROCESSING_DELAY", &cfg.ProcessingDelay, notNegative, "a Go duration, such as 100ms"); err != nil {
			return err
		}
		cfg.OrderKillAt = e("ORDER_KILL_AT")
	}
	if uses("analytics") {
		for _, u := range strings.Split(e.get("PAYMENT_URLS", "http://localhost:8000"), ",") {
			if u = strings.TrimSpace(u); !isHTTP(u) {
				return fmt.Errorf("PAYMENT_URLS=%q: want URLs such as http://localhost:8000, comma-separated", e("PAYMENT_URLS"))
			}
			cfg.PaymentURLs = append(cfg.PaymentURLs, strings.TrimSuffix(u, "/"))
		}
		if u := e("ANALYTICS_URL"); u != "" {
			if !isHTTP(u) {
				return fmt.Errorf("ANALYTICS_URL=%q: want the URL the other analytics instances reach this one at, such as http://analytics-2:8003", u)
			}
			cfg.AnalyticsURL = strings.TrimSuffix(u, "/")
		}
	}
	return nil
}

// stages reads what the exactly-once stages use: the delivery mode and the
// bounds of a transaction.
func (e env) stages(cfg *Config) error {
	switch d := e.get("DELIVERY", "exactly-once"); d {
	case "exactly-once":
	case "at-least-once":
		cfg.AtLeastOnce = true
	default:
		return fmt.Errorf("DELIVERY=%q: want exactly-once or at-least-once", d)
	}
	if v := e("TXN_MAX_RECORDS"); v != "" {
		var err error
		if cfg.MaxRecords, err = strconv.Atoi(v); err != nil || cfg.MaxRecords <= 0 {
			return fmt.Errorf("TXN_MAX_RECORDS=%q: want a positive number of records per transaction", v)
		}
	}
	return e.duration("TXN_MAX_INTERVAL", &cfg.MaxInterval, positive, "a positive Go duration, such as 100ms")
}

// SplitBrokers is the brokers of a comma-separated list, as KAFKA_BROKERS
// holds them: spaces trimmed, empty entries dropped.
func SplitBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// newLogger logs to stderr, JSON unless format is text.
func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if level != "" {
		if err := l.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", level)
		}
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "", "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("LOG_FORMAT=%q: want json or text", format)
}
