// Package webservertest checks, against a running server, the bounds that
// package webserver gives every HTTP server of the shop.
package webservertest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// ClosesTrickle sends a request to base+path whose body trickles in, a byte
// a second, and fails t unless the server cuts the connection within 30 s:
// a slow client must not hold a connection and a goroutine for ever.
func ClosesTrickle(t *testing.T, base, path string) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", path, u.Host); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := conn.Write([]byte(" ")); err != nil {
			return // cut
		}
		// Whatever the server answers, it must then close: read to EOF.
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := bufio.NewReader(conn).ReadString(0); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return // closed
		}
	}
	t.Fatalf("%s%s still held a connection whose body trickled in after 30 s", base, path)
}

// RefusesHugeHeaders fails t unless a request to base+path with 1.2 MB of
// headers is refused with a 4xx.
func RefusesHugeHeaders(t *testing.T, base, path string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	for i := range 12 {
		req.Header.Set(fmt.Sprintf("X-Padding-%d", i), strings.Repeat("p", 100_000))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode > 499 {
		t.Fatalf("1.2 MB of headers to %s%s: %d, want a 4xx", base, path, resp.StatusCode)
	}
}
