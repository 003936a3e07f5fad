package webserver_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/blackfriday-kafka/shop/infra/webserver"
)

// TestLimitClosesConnectionsPastTheBound: past n open connections, a new
// one is closed at once, and a place freed is taken again.
func TestLimitClosesConnectionsPastTheBound(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := webserver.Limit(inner, 1)
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	first, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	held := <-accepted

	second, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := second.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a connection past the bound: read %v, want EOF (closed by the server)", err)
	}

	held.Close()
	third, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the place freed was not taken again")
	}
}

// TestHeadersOnEveryAnswer: no sniffing and the content security policy,
// on a page and on an error alike.
func TestHeadersOnEveryAnswer(t *testing.T) {
	srv := httptest.NewServer(webserver.Headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<p>page</p>")
	})))
	defer srv.Close()
	for _, path := range []string{"/", "/missing"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Content-Security-Policy") != webserver.ContentSecurityPolicy {
			t.Fatalf("GET %s: headers %v", path, resp.Header)
		}
	}
}
