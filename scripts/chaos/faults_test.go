package main

import (
	"bufio"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
)

// FAULTS names the faults of a run; a name it does not know stops the run
// instead of running without the fault.
func TestParseFaults(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Faults
		bad  bool
	}{
		{in: "kill", want: Faults{Kill: true}},
		{in: "kill,pause,partition", want: Faults{Kill: true, Pause: true, Partition: true}},
		{in: " pause , partition", want: Faults{Pause: true, Partition: true}},
		{in: "pauses", bad: true},
		{in: ",", bad: true},
	} {
		got, err := parseFaults(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("parseFaults(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// A frozen proxy is what a server stopped with SIGSTOP looks like to its
// clients: connections are accepted, nothing is answered, nothing is
// closed; once thawed, what waited goes through.
func TestFrozenProxyAnswersNothingUntilItThaws(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // an echo server, line by line
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	p, err := startProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()

	open := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", p.addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	echo := func(c net.Conn, r *bufio.Reader, line string, wait time.Duration) (string, error) {
		if _, err := c.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(wait))
		got, err := r.ReadString('\n')
		return strings.TrimSpace(got), err
	}

	before, rb := open()
	if got, err := echo(before, rb, "one", 5*time.Second); err != nil || got != "one" {
		t.Fatalf("before the freeze: %q, %v", got, err)
	}
	p.freeze()
	during, rd := open() // accepted while frozen
	for _, c := range []struct {
		conn net.Conn
		r    *bufio.Reader
		line string
	}{{before, rb, "two"}, {during, rd, "three"}} {
		got, err := echo(c.conn, c.r, c.line, 300*time.Millisecond)
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("frozen, %q got %q, %v; want a timeout", c.line, got, err)
		}
	}
	p.thaw()
	for _, c := range []struct {
		conn net.Conn
		r    *bufio.Reader
		want string
	}{{before, rb, "two"}, {during, rd, "three"}} {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := c.r.ReadString('\n')
		if err != nil || strings.TrimSpace(got) != c.want {
			t.Fatalf("thawed: %q, %v; want %q", got, err, c.want)
		}
	}
}

// Every third pause of an instance outlasts its session and transaction
// timeouts, so that a run of PAUSES=10 makes three zombies at least.
func TestEveryThirdPauseMakesAZombie(t *testing.T) {
	p := newPauser(nil, nil, rand.New(rand.NewPCG(1, 2)))
	long := 0
	for i := range 10 {
		d := p.pauseLength(i)
		if (d > zombieAfter) != (i%3 == 1) {
			t.Fatalf("pause %d lasts %s, zombieAfter is %s", i, d, zombieAfter)
		}
		if d > zombieAfter {
			long++
		}
	}
	if long < 3 {
		t.Fatalf("%d long pauses in 10", long)
	}
}
