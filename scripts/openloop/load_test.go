package openloop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// firstUser is the user of payment 0 in the tests: payment i is user
// firstUser+i, and the test servers answer by i.
const firstUser = 5_000_000_000_000

// paymentOf is the index of the payment r posts, read from its user_id.
func paymentOf(t *testing.T, r *http.Request) int {
	var body struct {
		UserID int64 `json:"user_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.UserID < firstUser {
		t.Errorf("a body that is no payment of the run: %v (user %d)", err, body.UserID)
		return -1
	}
	return int(body.UserID - firstUser)
}

// answers is how the test server of TestLoadCountsEveryPayment answers
// payment i, by i%20, and the outcome the generator must see.
func answers(i int) outcome {
	switch i % 20 {
	case 6, 7, 16, 17:
		return shed
	case 8, 18:
		return other
	case 9:
		return timedOut
	case 19:
		return failed
	}
	return ok
}

// TestLoadCountsEveryPayment: against a server that accepts some
// payments, sheds some with and some without Retry-After, refuses some,
// cuts the connection of some and never answers some, every payment is
// counted once, as what it got.
func TestLoadCountsEveryPayment(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := paymentOf(t, r)
		switch answers(i) {
		case shed:
			if i%20 != 17 {
				w.Header().Set("Retry-After", "1")
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":"error","error":"the payment service is at its limit","reason":"overloaded"}`)
		case other:
			w.WriteHeader(http.StatusConflict)
		case timedOut:
			select { // until the client gives up and closes, or the test ends
			case <-r.Context().Done():
			case <-release:
			}
		case failed:
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			_, _ = io.WriteString(w, `{"status":"success"}`)
		}
	}))
	defer srv.Close()
	defer close(release)

	var progress bytes.Buffer
	o := Options{URL: srv.URL, Rate: 1000, For: 400 * time.Millisecond, GiveUp: time.Second, FirstUser: firstUser, Progress: 100 * time.Millisecond}
	l, rep := runLoad(t, o, &progress)

	want := map[outcome]int{}
	for i := range 400 {
		want[answers(i)]++
		if l.outcome[i] != answers(i) {
			t.Fatalf("payment %d: outcome %d, want %d", i, l.outcome[i], answers(i))
		}
		if l.latency[i] <= 0 || (l.outcome[i] == timedOut) != (l.latency[i] >= o.GiveUp) {
			t.Fatalf("payment %d (outcome %d): latency %s with a give-up of %s", i, l.outcome[i], l.latency[i], o.GiveUp)
		}
	}
	if rep.Offered != 400 || rep.OK+rep.Shed+rep.Other+rep.Errors+rep.Timeouts != rep.Offered {
		t.Fatalf("offered %d = ok %d + shed %d + other %d + errors %d + timeouts %d?", rep.Offered, rep.OK, rep.Shed, rep.Other, rep.Errors, rep.Timeouts)
	}
	if rep.OK != want[ok] || rep.Shed != want[shed] || rep.Other != want[other] || rep.Errors != want[failed] || rep.Timeouts != want[timedOut] {
		t.Fatalf("report %+v, want %v", rep, want)
	}
	if rep.ShedWithoutRetryAfter != 20 || rep.OtherStatuses != "409×40" || rep.OfferedRPS != 1000 || rep.OKRPS != 600 || rep.ShedRPS != 200 {
		t.Fatalf("report %+v: want 20 sheds without Retry-After, 40 409s, 1000/s offered, 600/s ok, 200/s shed", rep)
	}
	details := strings.Join(rep.Details(), "\n")
	if !strings.Contains(details, "DEFECT: 20 of 80 answers 503 had no Retry-After") || !strings.Contains(details, "20 connection errors") {
		t.Fatalf("details do not report the defect and the errors:\n%s", details)
	}
	if line := rep.Line(); !strings.HasPrefix(line, "overload: offered_rps=1000 ok_rps=600 shed_rps=200 other=40 errors=20 timeouts=20 ok_p50_ms=") ||
		!strings.HasSuffix(line, " charged=- charged_unanswered=- lost=-") {
		t.Fatalf("line %q", line)
	}
	if !strings.Contains(progress.String(), "s  offered ") || !strings.Contains(progress.String(), ", connections ") {
		t.Fatalf("no progress:\n%s", progress.String())
	}
}

// TestLatencyFromSchedule: a payment that waits for a connection waits on
// its client's clock. With one connection and a server that holds the
// first payment, the others are written late; each latency still counts
// from the payment's scheduled time, so it is at least the time from that
// time to the server's reading of it.
func TestLatencyFromSchedule(t *testing.T) {
	var mu sync.Mutex
	arrived := map[int]time.Time{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		i := paymentOf(t, r)
		mu.Lock()
		arrived[i] = at
		mu.Unlock()
		if i == 0 {
			time.Sleep(30 * time.Millisecond) // the others queue behind it, however long it takes
		}
		_, _ = io.WriteString(w, `{"status":"success"}`)
	}))
	defer srv.Close()

	o := Options{URL: srv.URL, Rate: 1000, For: 20 * time.Millisecond, GiveUp: 5 * time.Second, FirstUser: firstUser, MaxConns: 1}
	l, rep := runLoad(t, o, nil)
	if rep.OK != 20 || rep.Connections != 1 {
		t.Fatalf("%d ok on %d connections, want 20 on 1", rep.OK, rep.Connections)
	}
	fromWrite := 0 // payments a generator timing from its write would have flattered
	for i := range 20 {
		waited := arrived[i].Sub(l.sched.at(i))
		if l.latency[i] < waited {
			t.Errorf("payment %d: latency %s, but the server read it %s after its time", i, l.latency[i], waited)
		}
		if l.latency[i]-l.late[i] < waited {
			fromWrite++
		}
	}
	if fromWrite == 0 {
		t.Fatal("control: no payment waited for the connection, so the check above could not fail")
	}
}

// TestWarmConnections: the connections opened before the run carry its
// payments; a load they can carry opens no other.
func TestWarmConnections(t *testing.T) {
	var mu sync.Mutex
	accepted := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"status":"success"}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			accepted++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()

	o := Options{URL: srv.URL, Rate: 100, For: 200 * time.Millisecond, GiveUp: 5 * time.Second, FirstUser: firstUser, Warm: 10}
	_, rep := runLoad(t, o, nil)
	mu.Lock()
	defer mu.Unlock()
	if rep.OK != 20 || rep.Connections != 10 || rep.Warm != 10 || accepted != 10 {
		t.Fatalf("%d ok on %d connections (%d warm), the server accepted %d: want 20 on the 10 warm ones", rep.OK, rep.Connections, rep.Warm, accepted)
	}
}

// runLoad runs the load of o and returns it with its report.
func runLoad(t *testing.T, o Options, out io.Writer) (*load, *Report) {
	t.Helper()
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	l, err := newLoad(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l.run(ctx, out)
	if ctx.Err() != nil {
		t.Fatal(fmt.Errorf("the load did not end: %w", ctx.Err()))
	}
	return l, l.report()
}
