package infra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/blackfriday-kafka/shop/infra/registry"
)

// EmbeddedConfig places the embedded stack. Zero ports pick free ones, which
// is what tests want; `make run` asks for 9092-9094 and 8081.
type EmbeddedConfig struct {
	BrokerPorts  []int  // one per broker; default three ephemeral ports
	RegistryAddr string // default 127.0.0.1:0
	// NoSchemas leaves the registry empty, as before `make schemas`.
	NoSchemas bool
}

// Embedded is a 3-broker Kafka cluster and a schema registry in this process.
type Embedded struct {
	Brokers     []string
	RegistryURL string

	cluster  *kfake.Cluster
	registry *http.Server
}

// StartEmbedded starts the cluster and the registry, creates the topics and
// registers the schemas.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if len(cfg.BrokerPorts) == 0 {
		cfg.BrokerPorts = []int{0, 0, 0}
	}
	if cfg.RegistryAddr == "" {
		cfg.RegistryAddr = "127.0.0.1:0"
	}
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(len(cfg.BrokerPorts)),
		kfake.Ports(cfg.BrokerPorts...),
		kfake.BrokerConfigs(map[string]string{
			"default.replication.factor": "3",
			"min.insync.replicas":        "2",
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("start kafka brokers on ports %v: %w", cfg.BrokerPorts, err)
	}
	e := &Embedded{Brokers: cluster.ListenAddrs(), cluster: cluster}

	e.registry, e.RegistryURL, err = StartRegistry(cfg.RegistryAddr)
	if err != nil {
		cluster.Close()
		return nil, err
	}

	if err := CreateTopics(ctx, e.Brokers); err != nil {
		e.Close()
		return nil, err
	}
	if !cfg.NoSchemas {
		if err := RegisterSchemas(ctx, e.RegistryURL); err != nil {
			e.Close()
			return nil, err
		}
	}
	return e, nil
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

// StartRegistry serves the Confluent-compatible schema registry on addr and
// returns its server and URL.
func StartRegistry(addr string) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("start schema registry on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: registry.New().Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("schema registry stopped", "err", err)
		}
	}()
	return srv, "http://" + ln.Addr().String(), nil
}

// Cluster is where a tool runs: the cluster of brokers and registryURL,
// with topics and schemas ensured; or, with no brokers, a new embedded
// stack on free ports, stopped by Close.
type Cluster struct {
	Brokers     []string
	RegistryURL string
	Embedded    bool
	stack       *Embedded
}

// ConnectOrEmbed returns the cluster a tool such as chaos or bench runs on.
func ConnectOrEmbed(ctx context.Context, brokers []string, registryURL string) (*Cluster, error) {
	if len(brokers) > 0 {
		c := &Cluster{Brokers: brokers, RegistryURL: registryURL}
		if err := CreateTopics(ctx, c.Brokers); err != nil {
			return nil, err
		}
		if err := RegisterSchemas(ctx, c.RegistryURL); err != nil {
			return nil, err
		}
		return c, nil
	}
	stack, err := StartEmbedded(ctx, EmbeddedConfig{})
	if err != nil {
		return nil, err
	}
	return &Cluster{Brokers: stack.Brokers, RegistryURL: stack.RegistryURL, Embedded: true, stack: stack}, nil
}

// Close stops the embedded stack, if there is one.
func (c *Cluster) Close() {
	if c.stack != nil {
		c.stack.Close()
	}
}
