// Package shoptest boots the whole shop in a test: an embedded 3-broker
// cluster and registry on free ports, and the services on free ports, so
// tests run while `make run` holds the default ports. It also has what the
// services' tests share: a buffer for logs, a poll, clients of the cluster,
// and the benchmark of a step.
package shoptest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/infra/access"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/schemas/schemastest"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/txn"
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
	return ClusterWith(t, infra.EmbeddedConfig{})
}

// ClusterWith is Cluster as cfg says: secure, or on a data directory. The
// catalog is the admin's in secure mode. Closing the stack before the test
// ends is allowed.
func ClusterWith(t testing.TB, cfg infra.EmbeddedConfig) (*infra.Embedded, *schemas.Catalog) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stack, err := infra.StartEmbedded(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	cat, err := schemas.Connect(ctx, stack.RegistryURL, cfg.Secure.RegistryOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	return stack, cat
}

// StartSecure is Start in secure mode, as SECURE=1 make run: SASL and the
// ACLs of infra/access on the brokers, basic auth on the registry, each
// service signed in as its own principal with the dev stacks' password.
// The catalog is the admin's.
func StartSecure(t testing.TB, opts shop.Options) *Env {
	t.Helper()
	stack, cat := ClusterWith(t, infra.EmbeddedConfig{Secure: access.Stack(access.DevPassword)})
	cfg := Config(t, stack)
	cfg.Secure = true
	// Each service its own registry client, as its principal.
	s, err := shop.Start(context.Background(), cfg, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	return started(t, &Env{Stack: stack, Catalog: cat, Config: cfg, Shop: s})
}

// Config is the configuration of services on stack in test t: its brokers
// and registry, a free port each, the test's Logger, state on disk in a
// directory of the test's (a restart with the same Config finds it).
func Config(t testing.TB, stack *infra.Embedded) config.Config {
	return config.Config{
		Brokers:        stack.Brokers,
		RegistryURL:    stack.RegistryURL,
		Addr:           "127.0.0.1:0",
		InstanceID:     "1",
		Logger:         Logger(t),
		StateDir:       t.TempDir(),
		StateDirShared: true,
	}
}

// Start boots the cluster and the services named in opts (all four by
// default) and waits until they are ready. adjust, if not nil, may change
// their configuration.
func Start(t testing.TB, opts shop.Options, adjust func(cfg *config.Config)) *Env {
	t.Helper()
	stack, cat := Cluster(t)
	cfg := Config(t, stack)
	if adjust != nil {
		adjust(&cfg)
	}
	s, err := shop.Start(context.Background(), cfg, cat, opts)
	if err != nil {
		t.Fatal(err)
	}
	return started(t, &Env{Stack: stack, Catalog: cat, Config: cfg, Shop: s})
}

// Services starts the services opts names with cfg and cat, as Start does
// on a cluster of the test's own, waits until they are ready, and stops
// them when the test ends (or before: Stop may be called first): another
// instance, or the same after a restart.
func Services(t testing.TB, cfg config.Config, cat *schemas.Catalog, opts shop.Options) *shop.Shop {
	t.Helper()
	s, err := shop.Start(context.Background(), cfg, cat, opts)
	if err != nil {
		t.Fatal(err)
	}
	return started(t, &Env{Config: cfg, Catalog: cat, Shop: s}).Shop
}

// started stops env's services when the test ends, and returns env once
// they are ready.
func started(t testing.TB, env *Env) *Env {
	t.Helper()
	t.Cleanup(func() {
		if err := env.Shop.Stop(); err != nil {
			t.Errorf("services stopped with: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.Shop.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return env
}

// Logger is the services' logger in test t. With SHOP_TEST_LOGS=1 every
// line, debug included, goes to stderr as it comes; otherwise the last
// tailLines are kept, and printed only if t fails: a failure in CI shows
// what the services said before it.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("SHOP_TEST_LOGS") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	tail := &tail{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the last %d lines the services logged (SHOP_TEST_LOGS=1 shows them all):\n%s", tailLines, tail)
		}
	})
	return slog.New(slog.NewTextHandler(tail, nil))
}

const tailLines = 200

// tail keeps the last tailLines lines written to it, one per Write, as
// slog's handlers write them.
type tail struct {
	mu    sync.Mutex
	lines [tailLines]string
	n     int // lines written
}

func (l *tail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines[l.n%tailLines] = string(p)
	l.n++
	return len(p), nil
}

func (l *tail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for i := max(0, l.n-tailLines); i < l.n; i++ {
		b.WriteString(l.lines[i%tailLines])
	}
	return b.String()
}

// SyncBuffer is a bytes.Buffer that goroutines may write to at once: the
// logs of services, the stderr of a process.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Eventually calls check every interval until it returns nil, and fails the
// test with check's last error once within has passed.
func Eventually(t testing.TB, within, interval time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", within, err)
		}
		time.Sleep(interval)
	}
}

// Clients is a client of stack's brokers and its admin client; the client
// closes when the test ends.
func Clients(t testing.TB, stack *infra.Embedded) (*kgo.Client, *kadm.Client) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl, kadm.NewClient(cl)
}

// BenchTransform benchmarks a service's step on one record without a
// cluster: v, encoded for topic with a catalog on an in-process registry,
// at partition 1 offset 12345, through the handler that step makes with
// that catalog and a logger. It runs twice, as log=INFO and log=WARN: logs
// go to io.Discard in the services' JSON format, and log=WARN is the step
// with its info line filtered.
func BenchTransform[V any](b *testing.B, topic schemas.Topic[V], v *V, step func(*schemas.Catalog, *slog.Logger) txn.Handler) {
	cat := schemastest.Catalog(b)
	in, err := topic.Codec(cat).Record(v)
	if err != nil {
		b.Fatal(err)
	}
	in.Partition, in.Offset = 1, 12345
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
		b.Run("log="+level.String(), func(b *testing.B) {
			log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: level}))
			h := step(cat, log)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				out, err := h(ctx, in)
				if err != nil || len(out) != 1 {
					b.Fatal(out, err)
				}
			}
		})
	}
}
