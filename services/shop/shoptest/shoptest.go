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
	"github.com/blackfriday-kafka/shop/services/platform"
	"github.com/blackfriday-kafka/shop/services/shop"
)

// Env is a running shop.
type Env struct {
	Stack   *infra.Embedded
	Catalog *schemas.Catalog
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
	reg, err := schemas.NewRegistryClient(stack.RegistryURL)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := schemas.NewCatalog(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	return stack, cat
}

// Start boots the cluster and the services named in opts (all four by
// default) and waits until they are ready. Each service gets the cluster, the
// registry and a free port; adjust, if not nil, may change the rest.
func Start(t testing.TB, opts shop.Options, adjust func(name string, cfg *platform.Config)) *Env {
	t.Helper()
	stack, cat := Cluster(t)
	opts.Config = func(name string) (platform.Config, error) {
		cfg := platform.Config{
			Brokers:     stack.Brokers,
			RegistryURL: stack.RegistryURL,
			Addr:        "127.0.0.1:0",
			InstanceID:  "1",
			Logger:      Logger(),
		}
		if adjust != nil {
			adjust(name, &cfg)
		}
		return cfg, nil
	}
	s, err := shop.Start(context.Background(), cat, opts)
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
	return &Env{Stack: stack, Catalog: cat, Shop: s}
}

// Logger is quiet unless SHOP_TEST_LOGS=1.
func Logger() *slog.Logger {
	if os.Getenv("SHOP_TEST_LOGS") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
