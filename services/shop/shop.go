// Package shop starts the four services of the shop together, in one
// process: what `make run` and `make services` do, and what end-to-end tests
// and operator tools embed.
package shop

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/analytics"
	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/email"
	"github.com/blackfriday-kafka/shop/services/order"
	"github.com/blackfriday-kafka/shop/services/payment"
	"github.com/blackfriday-kafka/shop/services/serve"
)

// Options say which services to start, and how the payment service waits.
type Options struct {
	Services []string // default all four, config.Services
	Payment  payment.Options
}

// Shop is a set of running services.
type Shop struct {
	names   []string
	servers map[string]*serve.Server
	cancel  context.CancelFunc
	stopped chan struct{} // closed once every service returned
	err     error         // why they stopped; set before stopped is closed
}

// Start builds and starts the services, each configured by cfg as its own
// principal. They share cat; with none, each principal gets a catalog of
// its own on cfg's registry. They run until ctx is cancelled or Stop
// is called.
func Start(ctx context.Context, cfg config.Config, cat *schemas.Catalog, opts Options) (*Shop, error) {
	if len(opts.Services) == 0 {
		opts.Services = config.Services
	}
	s := &Shop{names: opts.Services, servers: make(map[string]*serve.Server), stopped: make(chan struct{})}
	// One catalog per principal the registry sees: in open mode (or with
	// one KAFKA_USERNAME for all) the services share one.
	catalogs := make(map[config.Credentials]*schemas.Catalog)
	for _, name := range opts.Services {
		cfg := cfg.As(name)
		cat := cat
		if cat == nil {
			cred, _ := cfg.Credentials()
			if cat = catalogs[cred]; cat == nil {
				reg, err := schemas.NewRegistryClient(cfg.RegistryURL, cfg.Registry()...)
				if err != nil {
					return nil, err
				}
				cat = schemas.NewCatalog(reg)
				catalogs[cred] = cat
			}
		}
		if payment, ok := s.servers["payment"]; ok && name == "analytics" {
			cfg.PaymentURLs = []string{payment.URL()} // the dashboard shows this process's edge
		}
		svc, err := build(name, cfg, cat, opts)
		if err != nil {
			return nil, fmt.Errorf("%s service: %w", name, err)
		}
		srv, err := serve.Listen(svc, cfg.ListenAddr(name), cfg.Log().With("service", name, "instance", cfg.InstanceID))
		if err != nil {
			return nil, err
		}
		// A service that tells others where it is (analytics, to its
		// group) learns its URL once it listens, unless it is told one.
		if a, ok := svc.(interface{ Advertise(url string) }); ok {
			url := srv.URL()
			if cfg.AnalyticsURL != "" {
				url = cfg.AnalyticsURL
			}
			a.Advertise(url)
		}
		s.servers[name] = srv
	}
	ctx, s.cancel = context.WithCancel(ctx)
	g, ctx := errgroup.WithContext(ctx)
	for _, srv := range s.servers {
		g.Go(func() error { return srv.Run(ctx) })
	}
	go func() {
		s.err = g.Wait()
		close(s.stopped)
	}()
	return s, nil
}

func build(name string, cfg config.Config, cat *schemas.Catalog, opts Options) (serve.Service, error) {
	switch name {
	case "payment":
		return payment.New(cfg, cat, opts.Payment)
	case "order":
		return order.New(cfg, cat)
	case "email":
		return email.New(cfg, cat)
	case "analytics":
		return analytics.New(cfg, cat)
	}
	return nil, fmt.Errorf("no service named %q (want payment, order, email or analytics)", name)
}

// URL is the base URL of a running service, such as http://127.0.0.1:8000.
func (s *Shop) URL(name string) string {
	if srv, ok := s.servers[name]; ok {
		return srv.URL()
	}
	return ""
}

// WaitReady returns once every service answers /readyz with 200.
func (s *Shop) WaitReady(ctx context.Context) error {
	for _, name := range s.names {
		switch err := serve.WaitReady(ctx, s.URL(name), 100*time.Millisecond, s.stopped); {
		case errors.Is(err, serve.ErrStopped):
			return fmt.Errorf("services stopped before being ready: %v", s.err)
		case err != nil:
			return fmt.Errorf("%s service not ready: %w", name, err)
		}
	}
	return nil
}

// ReadyLine is the "ready:" line that commands print: each service's URL.
func (s *Shop) ReadyLine() string {
	line := "ready:"
	for _, name := range s.names {
		line += " " + name + "=" + s.URL(name)
	}
	return line
}

// Wait returns when the services have stopped, with why.
func (s *Shop) Wait() error {
	<-s.stopped
	return s.err
}

// Stop stops the services gracefully and waits for them.
func (s *Shop) Stop() error {
	s.cancel()
	return s.Wait()
}
