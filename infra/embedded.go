package infra

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/infra/registry"
	"github.com/blackfriday-kafka/shop/infra/webserver"
)

// EmbeddedConfig places the embedded stack. Zero ports pick free ones, which
// is what tests want; `make run` asks for 9092-9094 and 8081.
type EmbeddedConfig struct {
	BrokerPorts  []int  // one per broker; default three ephemeral ports
	RegistryAddr string // default 127.0.0.1:0
	// NoSchemas leaves the registry empty, as before `make schemas`.
	NoSchemas bool
	// DataDir, if set, keeps the cluster's data (topics, offsets, groups,
	// transactions, and so the registry's _schemas) in that directory, as
	// Kafka keeps its log.dirs: a new stack on it continues where the last
	// one stopped. Empty keeps everything in memory.
	DataDir string
	// Secure, if set, is the secure mode: SASL and ACLs on the brokers,
	// basic auth on the registry.
	Secure *Secure
}

// Secure is what a stack needs in secure mode, from the table of who may
// do what (infra/access).
type Secure struct {
	Cluster  []kfake.Opt       // the brokers' SASL users and ACLs
	Admin    []kgo.Opt         // the admin's SASL, for the stack's own clients
	Registry []sr.ClientOpt    // the admin's basic auth at the registry
	Users    map[string]string // the registry's users and their passwords
}

// AdminOpts are the admin's options for the brokers: none in open mode (s
// nil).
func (s *Secure) AdminOpts() []kgo.Opt {
	if s == nil {
		return nil
	}
	return s.Admin
}

// RegistryOpts are the admin's options for the registry: none in open
// mode (s nil).
func (s *Secure) RegistryOpts() []sr.ClientOpt {
	if s == nil {
		return nil
	}
	return s.Registry
}

// Embedded is a 3-broker Kafka cluster and a schema registry in this process.
type Embedded struct {
	Brokers     []string
	RegistryURL string

	cluster  *kfake.Cluster
	registry *RegistryServer
}

// StartEmbedded starts the cluster, then the registry on it (its state in
// the cluster's _schemas topic), creates the topics and registers the
// schemas.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if len(cfg.BrokerPorts) == 0 {
		cfg.BrokerPorts = []int{0, 0, 0}
	}
	if cfg.RegistryAddr == "" {
		cfg.RegistryAddr = "127.0.0.1:0"
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(len(cfg.BrokerPorts)),
		kfake.Ports(cfg.BrokerPorts...),
		kfake.BrokerConfigs(map[string]string{
			"default.replication.factor": "3",
			"min.insync.replicas":        "2",
			// Compact the state topics every minute, not every hour.
			"log.cleaner.backoff.ms": "60000",
		}),
	}
	opts = append(opts, kfake.MaxVersions(javaToolsVersions()))
	var registryOpts []func(*registry.Config)
	if s := cfg.Secure; s != nil {
		opts = append(opts, s.Cluster...)
		registryOpts = append(registryOpts, func(c *registry.Config) { c.Connect, c.Users = s.Admin, s.Users })
	}
	if cfg.DataDir != "" {
		if err := markDataDir(cfg.DataDir, cfg.Secure != nil); err != nil {
			return nil, err
		}
		// Written through the page cache, as Kafka writes by default:
		// a killed process loses nothing the OS got.
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start kafka brokers on ports %v: %w", cfg.BrokerPorts, err)
	}
	e := &Embedded{Brokers: cluster.ListenAddrs(), cluster: cluster}

	e.registry, err = StartRegistry(ctx, cfg.RegistryAddr, e.Brokers, registryOpts...)
	if err != nil {
		cluster.Close()
		return nil, err
	}
	e.RegistryURL = e.registry.URL

	if err := CreateTopics(ctx, e.Brokers, cfg.Secure.AdminOpts()...); err != nil {
		e.Close()
		return nil, err
	}
	if !cfg.NoSchemas {
		if err := RegisterSchemas(ctx, e.RegistryURL, cfg.Secure.RegistryOpts()...); err != nil {
			e.Close()
			return nil, err
		}
	}
	return e, nil
}

// securityFile, in a data directory, says how the directory was made:
// "open", or "secure" (SECURE=1).
const securityFile = "shop-security"

// ErrDataMadeOpen is why a secure start refuses a data directory made
// open: the operator's to decide, so the command says it in one line.
var ErrDataMadeOpen = errors.New("made without SECURE=1")

// markDataDir refuses, before anything starts, a secure stack on a data
// directory made open: the brokers would load the open stack's users
// (none) over the principals', and refuse every client. It marks a new
// directory, or one from before the mark, with the mode it starts in. A
// directory made secure may start open: its users wait, unused, for the
// next secure start.
func markDataDir(dir string, secure bool) error {
	mode := "open"
	if secure {
		mode = "secure"
	}
	made, err := os.ReadFile(filepath.Join(dir, securityFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, securityFile), []byte(mode+"\n"), 0o644)
	case err != nil:
		return err
	case secure && strings.TrimSpace(string(made)) == "open":
		return fmt.Errorf("the data in %s was %w and cannot go secure: FRESH=1 starts it empty (deleting its data), or start without SECURE=1 to keep it", dir, ErrDataMadeOpen)
	}
	return nil
}

// javaToolsVersions are the request versions the embedded brokers answer,
// capped where kfake's newest answers trip Kafka's own Java tools (the
// tutorial's kafka-topics and kafka-consumer-groups): DescribeTopicPartitions
// answers null replica lists the Java admin client does not expect, so it
// is hidden and the tools fall back to Metadata; ListGroups v5 filters the
// group type case-sensitively and lists nothing; CreateTopics v5+ answers
// no configs. franz-go's clients need none of these versions.
func javaToolsVersions() *kversion.Versions {
	v := kversion.Stable()
	v.SetMaxKeyVersion(int16(kmsg.DescribeTopicPartitions), -1)
	v.SetMaxKeyVersion(int16(kmsg.ListGroups), 4)
	v.SetMaxKeyVersion(int16(kmsg.CreateTopics), 4)
	return v
}

// BrokerList is the brokers as KAFKA_BROKERS spells them.
func (e *Embedded) BrokerList() string { return strings.Join(e.Brokers, ",") }

// Cluster gives tests the fake cluster's fault controls.
func (e *Embedded) Cluster() *kfake.Cluster { return e.cluster }

// Close stops the registry and the brokers.
func (e *Embedded) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = e.registry.Shutdown(ctx)
	e.cluster.Close()
}

// RegistryServer is the schema registry serving HTTP.
type RegistryServer struct {
	URL      string
	Registry *registry.Registry
	srv      *http.Server
}

// StartRegistry starts the Confluent-compatible schema registry on the
// Kafka cluster of brokers, its state in the cluster's _schemas topic, and
// serves it on addr once it has read that state. opts adjust its
// registry.Config (credentials, Kafka client options).
func StartRegistry(ctx context.Context, addr string, brokers []string, opts ...func(*registry.Config)) (*RegistryServer, error) {
	cfg := registry.Config{Brokers: brokers}
	for _, opt := range opts {
		opt(&cfg)
	}
	reg, err := registry.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	readyCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := reg.WaitReady(readyCtx); err != nil {
		reg.Close()
		return nil, err
	}
	ln, err := webserver.Listen(addr)
	if err != nil {
		reg.Close()
		return nil, fmt.Errorf("start schema registry on %s: %w", addr, err)
	}
	s := &RegistryServer{URL: "http://" + ln.Addr().String(), Registry: reg,
		srv: webserver.New(reg.Handler(), slog.Default())}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("schema registry stopped", "err", err)
		}
	}()
	return s, nil
}

// Shutdown stops serving once the requests in flight are answered, then
// stops the registry.
func (s *RegistryServer) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.Registry.Close()
	return err
}

// Close stops serving at once, then stops the registry.
func (s *RegistryServer) Close() {
	_ = s.srv.Close()
	s.Registry.Close()
}

// Cluster is where a tool runs: the cluster of brokers and registryURL,
// with topics and schemas ensured; or, with no brokers, a new embedded
// stack on free ports, stopped by Close.
type Cluster struct {
	Brokers     []string
	RegistryURL string
	Embedded    bool
	Secure      bool // SASL and ACLs on the brokers, basic auth on the registry
	// In secure mode, the admin's credentials: for the brokers and for
	// the registry.
	Connect  []kgo.Opt
	Registry []sr.ClientOpt
	stack    *Embedded
}

// ConnectOrEmbed returns the cluster a tool such as chaos or bench runs on,
// in secure mode when sec is not nil.
func ConnectOrEmbed(ctx context.Context, brokers []string, registryURL string, sec *Secure) (*Cluster, error) {
	admin, auth := sec.AdminOpts(), sec.RegistryOpts()
	if len(brokers) > 0 {
		c := &Cluster{Brokers: brokers, RegistryURL: registryURL, Secure: sec != nil, Connect: admin, Registry: auth}
		if err := CreateTopics(ctx, c.Brokers, admin...); err != nil {
			return nil, err
		}
		if err := RegisterSchemas(ctx, c.RegistryURL, auth...); err != nil {
			return nil, err
		}
		return c, nil
	}
	stack, err := StartEmbedded(ctx, EmbeddedConfig{Secure: sec})
	if err != nil {
		return nil, err
	}
	return &Cluster{Brokers: stack.Brokers, RegistryURL: stack.RegistryURL, Embedded: true, Secure: sec != nil,
		Connect: admin, Registry: auth, stack: stack}, nil
}

// Close stops the embedded stack, if there is one.
func (c *Cluster) Close() {
	if c.stack != nil {
		c.stack.Close()
	}
}
