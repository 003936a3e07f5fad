package serve

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// ErrStopped is WaitReady's answer when the service stopped first.
var ErrStopped = errors.New("stopped before it was ready")

// WaitReady asks the service at baseURL for /readyz every interval until
// it answers 200. It returns ctx's error if ctx ends first, and ErrStopped
// once stopped is closed (the service's process or goroutines ended), so
// that a caller never waits out its timeout on a service that is gone.
func WaitReady(ctx context.Context, baseURL string, every time.Duration, stopped <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(baseURL + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stopped:
			return ErrStopped
		case <-time.After(every):
		}
	}
}

// FreePort is a TCP port of 127.0.0.1 that nothing listens on, now: where a
// service process started with PORT will listen.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
