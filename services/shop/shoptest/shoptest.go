// Package shoptest boots the whole shop in a test: an embedded 3-broker
// cluster and registry on free ports, and the services on free ports, so
// tests run while `make run` holds the default ports.
package shoptest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/shop"
)

// Env is a running shop.
type Env struct {
	Stack   *infra.Embedded
	Catalog *schemas.Catalog
	Config  config.Config // what the services were started with
	Shop    *shop.Shop
}

// Cluster starts the embedded cluster and registry, with topics and schemas,
// and stops them when the test ends.
func Cluster(t testing.TB) (*infra.Embedded, *schemas.Catalog) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stack, err := infra.StartEmbedded(ctx, infra.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	cat, err := schemas.Connect(ctx, stack.RegistryURL)
	if err != nil {
		t.Fatal(err)
	}
	return stack, cat
}

// Config is the configuration of services on stack: its brokers and
// registry, a free port each, a quiet logger.
func Config(stack *infra.Embedded) config.Config {
	return config.Config{
		Brokers:     stack.Brokers,
		RegistryURL: stack.RegistryURL,
		Addr:        "127.0.0.1:0",
		InstanceID:  "1",
		Logger:      Logger(),
	}
}

// Start boots the cluster and the services named in opts (all four by
// default) and waits until they are ready. adjust, if not nil, may change
// their configuration.
func Start(t testing.TB, opts shop.Options, adjust func(cfg *config.Config)) *Env {
	t.Helper()
	stack, cat := Cluster(t)
	cfg := Config(stack)
	if adjust != nil {
		adjust(&cfg)
	}
	s, err := shop.Start(context.Background(), cfg, cat, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("services stopped with: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return &Env{Stack: stack, Catalog: cat, Config: cfg, Shop: s}
}

// Logger is quiet unless SHOP_TEST_LOGS=1.
func Logger() *slog.Logger {
	if os.Getenv("SHOP_TEST_LOGS") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
