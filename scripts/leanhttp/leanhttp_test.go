package leanhttp

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestConn: answers are read on one kept-alive connection, Retry-After is
// seen, a server's Connection: close makes the next request dial again,
// and a server that does not answer by the deadline is a timeout.
func TestConn(t *testing.T) {
	var conns atomic.Int64
	hold := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch string(body) {
		case `{"shed":true}`:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"error","reason":"overloaded"}`))
		case `{"close":true}`:
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusBadRequest)
		case `{"hold":true}`:
			<-hold
		default:
			_, _ = w.Write([]byte(`{"status":"success"}`))
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	defer close(hold)

	cl, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := cl.Conn()
	defer c.Close()
	ctx := context.Background()
	if err := c.Open(ctx, time.Now().Add(10*time.Second)); err != nil { // the first request goes on it
		t.Fatal(err)
	}
	do := func(body string, within time.Duration) (Answer, error) {
		return c.Do(ctx, cl.AppendPost(nil, "/payment", []byte(body)), time.Now().Add(within))
	}
	for _, tc := range []struct {
		body  string
		want  Answer
		conns int64
	}{
		{`{"ok":true}`, Answer{Status: 200}, 1},
		{`{"shed":true}`, Answer{Status: 503, RetryAfter: true}, 1},
		{`{"ok":true}`, Answer{Status: 200}, 1},
		{`{"close":true}`, Answer{Status: 400}, 1},
		{`{"ok":true}`, Answer{Status: 200}, 2},
	} {
		a, err := do(tc.body, 10*time.Second)
		if err != nil || a != tc.want || conns.Load() != tc.conns {
			t.Fatalf("%s: answer %+v, %v, after %d connections; want %+v after %d", tc.body, a, err, conns.Load(), tc.want, tc.conns)
		}
	}
	if _, err := do(`{"hold":true}`, 50*time.Millisecond); !TimedOut(err) {
		t.Fatalf("a held request: %v, want a timeout", err)
	}
	if a, err := do(`{"ok":true}`, 10*time.Second); err != nil || a.Status != 200 || conns.Load() != 3 {
		t.Fatalf("after a timeout: %+v, %v, %d connections; want 200 on a third", a, err, conns.Load())
	}
}

func TestNewClientRefusesWhatItCannotSpeak(t *testing.T) {
	for _, u := range []string{"https://localhost:8000", "localhost:8000", "http://"} {
		if _, err := NewClient(u); err == nil {
			t.Errorf("NewClient(%q) accepted", u)
		}
	}
	cl, err := NewClient("http://shop.example")
	if err != nil || cl.addr != "shop.example:80" || cl.host != "shop.example" {
		t.Fatalf("NewClient(http://shop.example) = %+v, %v", cl, err)
	}
}
