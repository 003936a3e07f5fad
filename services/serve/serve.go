// Package platform is what every service of the shop has in common: its
// configuration from the environment, its HTTP server with /healthz, /readyz
// and /metrics, and a graceful stop on SIGTERM.
package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/blackfriday-kafka/shop/txn"
)

// Default ports of the four services.
var DefaultPorts = map[string]int{"payment": 8000, "order": 8001, "email": 8002, "analytics": 8003}

// Config is a service's configuration. FromEnv reads it as CONTRACTS.md
// names it; tests fill it in directly.
type Config struct {
	Brokers         []string      // KAFKA_BROKERS
	RegistryURL     string        // SCHEMA_REGISTRY_URL
	Addr            string        // listen address, from PORT; ":0" picks a free port
	InstanceID      string        // INSTANCE_ID, part of the transactional ID
	ProcessingDelay time.Duration // PROCESSING_DELAY, per order
	// AtLeastOnce (DELIVERY=at-least-once) runs order and email without
	// transactions: the control that shows what exactly-once prevents.
	AtLeastOnce bool
	// Tuning bounds the transactions of order and email: MaxRecords from
	// TXN_MAX_RECORDS, MaxInterval from TXN_MAX_INTERVAL; zero takes the
	// engine's defaults (100,000 records, 100ms).
	Tuning txn.Config
	Logger *slog.Logger
}

// FromEnv reads the configuration of service from the environment.
func FromEnv(service string) (Config, error) {
	cfg := Config{
		Brokers:     strings.Split(env("KAFKA_BROKERS", "localhost:9092,localhost:9093,localhost:9094"), ","),
		RegistryURL: env("SCHEMA_REGISTRY_URL", "http://localhost:8081"),
		InstanceID:  env("INSTANCE_ID", "1"),
	}
	port := env("PORT", strconv.Itoa(DefaultPorts[service]))
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return cfg, fmt.Errorf("PORT=%q: not a port number", port)
	}
	cfg.Addr = ":" + port
	delay, err := time.ParseDuration(env("PROCESSING_DELAY", "0s"))
	if err != nil {
		return cfg, fmt.Errorf("PROCESSING_DELAY: %w (write it as a Go duration, such as 100ms)", err)
	}
	cfg.ProcessingDelay = delay
	switch d := env("DELIVERY", "exactly-once"); d {
	case "exactly-once":
	case "at-least-once":
		cfg.AtLeastOnce = true
	default:
		return cfg, fmt.Errorf("DELIVERY=%q: want exactly-once or at-least-once", d)
	}
	if v := os.Getenv("TXN_MAX_RECORDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return cfg, fmt.Errorf("TXN_MAX_RECORDS=%q: want a positive number of records per transaction", v)
		}
		cfg.Tuning.MaxRecords = n
	}
	if v := os.Getenv("TXN_MAX_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("TXN_MAX_INTERVAL=%q: want a positive Go duration, such as 100ms", v)
		}
		cfg.Tuning.MaxInterval = d
	}
	return cfg, nil
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Service is one of the shop's services.
type Service interface {
	// Name is the service's name: payment, order, email or analytics.
	Name() string
	// Routes adds the service's business endpoints.
	Routes(r *mux.Router)
	// Run does the service's background work until ctx is cancelled,
	// then commits or aborts what it holds and returns.
	Run(ctx context.Context) error
	// Ready returns nil when the service can do its work.
	Ready(ctx context.Context) error
	// Collectors are the service's Prometheus metrics.
	Collectors() []prometheus.Collector
}

// Server is a service with its HTTP listener.
type Server struct {
	svc Service
	ln  net.Listener
	log *slog.Logger
}

// Listen binds the service's HTTP port. Binding before Run lets callers learn
// the port (Addr) of a service started on ":0". log should name the service
// and its instance; nil means slog.Default, naming the service.
func Listen(svc Service, addr string, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s service: listen on %s: %w", svc.Name(), addr, err)
	}
	if log == nil {
		log = slog.Default().With("service", svc.Name())
	}
	return &Server{svc: svc, ln: ln, log: log}, nil
}

// URL is the service's base URL, such as http://127.0.0.1:8000.
func (s *Server) URL() string {
	port := s.ln.Addr().(*net.TCPAddr).Port
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

// Run serves HTTP and runs the service until ctx is cancelled, then stops
// taking requests, lets the service finish, and returns.
func (s *Server) Run(ctx context.Context) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(s.svc.Collectors()...)

	r := mux.NewRouter()
	r.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok", "service": s.svc.Name()})
	}).Methods(http.MethodGet)
	r.HandleFunc("/readyz", func(w http.ResponseWriter, req *http.Request) {
		if err := s.svc.Ready(req.Context()); err != nil {
			WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "service": s.svc.Name(), "error": err.Error()})
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready", "service": s.svc.Name()})
	}).Methods(http.MethodGet)
	r.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{})).Methods(http.MethodGet)
	s.svc.Routes(r)

	srv := &http.Server{
		Handler:           r,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Serve(s.ln) }()
	s.log.Info("service started", "url", s.URL())

	// The service's work outlives the HTTP server by a little: payments
	// in flight still need the producer to get their Kafka ack.
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	runDone := make(chan error, 1)
	go func() { runDone <- s.svc.Run(runCtx) }()

	var runErr error
	select {
	case <-ctx.Done():
		s.log.Info("stopping")
	case runErr = <-runDone:
		runDone <- runErr
		s.log.Error("service stopped on its own", "err", runErr)
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(stopCtx); err != nil {
		s.log.Warn("HTTP shutdown", "err", err)
	}
	stopRun()
	runErr = <-runDone
	if err := <-httpDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return errors.Join(runErr, err)
	}
	s.log.Info("stopped")
	return runErr
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ErrorBody is the shape of every error answer: {"status":"error","error":…,"field":…}.
type ErrorBody struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Field  string `json:"field,omitempty"`
}

// WriteError answers with an error; field names the offending input, if any.
func WriteError(w http.ResponseWriter, status int, msg, field string) {
	WriteJSON(w, status, ErrorBody{Status: "error", Error: msg, Field: field})
}
