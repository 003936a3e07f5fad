// Package webserver is how every HTTP server of the shop is set up: the
// four services, the schema registry and the mail server's inbox. They all
// take the same bounds, so that no client can hold a connection, a
// goroutine or memory for longer than a request needs: headers and whole
// requests are read within a time and a size, answers written within a
// time, idle connections closed, and connections past a count refused at
// once rather than left waiting in the kernel's queue.
package webserver

import (
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// The bounds every server applies.
const (
	// MaxHeaderBytes bounds a request's headers; past it net/http answers
	// 431. Basic auth, an Idempotency-Key and a browser's headers take a
	// few hundred bytes.
	MaxHeaderBytes = 64 << 10
	// ReadHeaderTimeout bounds the wait for a request's headers.
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds the reading of a whole request, its body included:
	// a body that trickles in loses its connection then.
	ReadTimeout = 10 * time.Second
	// WriteTimeout bounds a request from its headers to the end of its
	// answer. It is longer than the payment service's wait for Kafka (10 s),
	// so that a payment written is always answered.
	WriteTimeout = 30 * time.Second
	// IdleTimeout closes a kept-alive connection nobody uses.
	IdleTimeout = time.Minute
	// MaxConns bounds the connections a server holds open at once.
	MaxConns = 10_000
)

// ContentSecurityPolicy is sent with every answer: the pages load their
// scripts, styles and data from their own server only, and nothing may
// frame them. Inline styles are allowed (the inbox page has a style block);
// inline scripts are not.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// New is an HTTP server for h with the bounds above, its errors (a
// refused TLS handshake, a header too large) logged to log at debug level.
func New(h http.Handler, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.Default()
	}
	return &http.Server{
		Handler:           Headers(h),
		MaxHeaderBytes:    MaxHeaderBytes,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// Headers adds to every answer of h the headers that keep a browser from
// reading it as something else: no content sniffing, and the content
// security policy.
func Headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr["X-Content-Type-Options"] = nosniff
		hdr["Content-Security-Policy"] = csp
		h.ServeHTTP(w, r)
	})
}

// Shared, never modified: setting them costs no allocation per request.
var (
	nosniff = []string{"nosniff"}
	csp     = []string{ContentSecurityPolicy}
)

// Listen listens on addr, with at most MaxConns connections open at once.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return Limit(ln, MaxConns), nil
}

// Limit returns ln holding at most n connections open at once: one
// accepted past that is closed at once, so that its client learns it at
// once instead of waiting in the accept queue until it gives up.
func Limit(ln net.Listener, n int) net.Listener {
	return &limitListener{Listener: ln, max: int64(n)}
}

type limitListener struct {
	net.Listener
	max  int64
	open atomic.Int64
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			_ = c.Close()
			continue
		}
		return &countedConn{Conn: c, l: l}, nil
	}
}

type countedConn struct {
	net.Conn
	l      *limitListener
	closed atomic.Bool
}

// CloseWrite lets net/http half-close a connection it answers with an
// error, as it does with a bare TCP connection.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
	}
	return c.Conn.Close()
}
