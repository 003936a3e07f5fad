// Package serve is the HTTP side of every service of the shop: /healthz,
// /readyz, /metrics and the service's own routes, with timeouts and a
// graceful stop, and the one shape of JSON answers and errors.
package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/blackfriday-kafka/shop/infra/webserver"
)

// Service is one of the shop's services.
type Service interface {
	// Name is the service's name: payment, order, email or analytics.
	Name() string
	// Routes adds the service's business endpoints.
	Routes(r *mux.Router)
	// Run does the service's background work until ctx is cancelled,
	// then commits or aborts what it holds and returns.
	Run(ctx context.Context) error
	// Ready returns nil when the service can do its work (/readyz).
	Ready(ctx context.Context) error
	// Healthy returns nil unless the service is stuck: alive, but unable
	// to make progress (/healthz).
	Healthy() error
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
// the port (URL) of a service started on ":0". log should name the service
// and its instance.
func Listen(svc Service, addr string, log *slog.Logger) (*Server, error) {
	ln, err := webserver.Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("%s service: listen on %s: %w", svc.Name(), addr, err)
	}
	return &Server{svc: svc, ln: ln, log: log}, nil
}

// URL is the service's base URL, such as http://127.0.0.1:8000.
func (s *Server) URL() string {
	return "http://127.0.0.1:" + strconv.Itoa(s.ln.Addr().(*net.TCPAddr).Port)
}

// Run serves HTTP and runs the service until ctx is cancelled, then stops
// taking requests, lets the service finish, and returns.
func (s *Server) Run(ctx context.Context) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(s.svc.Collectors()...)

	r := mux.NewRouter()
	name := s.svc.Name()
	r.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.svc.Healthy(); err != nil {
			JSON(w, http.StatusServiceUnavailable, map[string]string{"status": "stalled", "service": name, "error": err.Error()})
			return
		}
		JSON(w, http.StatusOK, map[string]string{"status": "ok", "service": name})
	}).Methods(http.MethodGet)
	r.HandleFunc("/readyz", func(w http.ResponseWriter, req *http.Request) {
		if err := s.svc.Ready(req.Context()); err != nil {
			JSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "service": name, "error": err.Error()})
			return
		}
		JSON(w, http.StatusOK, map[string]string{"status": "ready", "service": name})
	}).Methods(http.MethodGet)
	r.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{})).Methods(http.MethodGet)
	s.svc.Routes(r)

	srv := webserver.New(r, s.log)
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

// JSON answers with v as JSON.
func JSON(w http.ResponseWriter, status int, v any) {
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

// Error answers with an error; field names the offending input, if any.
func Error(w http.ResponseWriter, status int, msg, field string) {
	JSON(w, status, ErrorBody{Status: "error", Error: msg, Field: field})
}

// Limit reads ?limit= (default 100, at most 1000) of a list view, or
// answers 400 naming the parameter and returns false.
func Limit(w http.ResponseWriter, r *http.Request) (int, bool) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 100, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 1000 {
		Error(w, http.StatusBadRequest, "limit must be a whole number from 0 to 1000", "limit")
		return 0, false
	}
	return n, true
}
