// Package leanhttp is the HTTP/1.1 client of the load generators (bench's
// ingest, overload): a load that costs this machine little CPU, as wrk's
// does for a web server. Each caller has one kept-alive connection of its
// own, writes a prepared request in one write and reads the answer through
// a buffered reader, where net/http's client spends two goroutines,
// channels and a few allocations per request. On the 2 cores the load
// shares with the shop, what the load generator does not take, the shop
// gets.
//
// It speaks plain HTTP/1.1 to one server and nothing more: no TLS, no
// pipelining (a connection sends its next request only once the last is
// answered), no redirects, answers with a Content-Length only.
package leanhttp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"
)

// Client is where the requests go: the host of an http:// URL.
type Client struct {
	host string // for the Host header, as the URL has it
	addr string // host:port, to dial
	// head is what a POST writes between its path and its body's length:
	// the same for every request, so it is made once.
	head string
}

// NewClient is a client of the server at baseURL, such as
// http://localhost:8000.
func NewClient(baseURL string) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("%q: want an http:// URL with a host (the lean client speaks plain HTTP/1.1)", baseURL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	head := " HTTP/1.1\r\nHost: " + u.Host + "\r\nContent-Type: application/json\r\nContent-Length: "
	return &Client{host: u.Host, addr: addr, head: head}, nil
}

// AppendPost appends to dst the whole of a POST of a JSON body to path, as
// one write sends it.
func (c *Client) AppendPost(dst []byte, path string, body []byte) []byte {
	dst = append(dst, "POST "...)
	dst = append(dst, path...)
	dst = append(dst, c.head...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, "\r\n\r\n"...)
	return append(dst, body...)
}

// Conn is one caller's connection to the server. It dials on first use,
// and again after an error or an answer that closed it. It is not safe for
// concurrent use.
type Conn struct {
	c    *Client
	conn net.Conn
	rd   *bufio.Reader
}

// Conn is a new connection of c's, not dialled yet.
func (c *Client) Conn() *Conn { return &Conn{c: c} }

// Close closes the connection; the next Do dials again.
func (c *Conn) Close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// Answer is what the load generators read of an answer.
type Answer struct {
	Status int
	// RetryAfter: the answer has a Retry-After header with a value, as a
	// shedding server's 503 must.
	RetryAfter bool
}

// Do sends req, a whole request (AppendPost), and reads its answer, the
// body read and dropped. The dial, the write and the read all end at
// deadline: past it Do fails with an error TimedOut recognizes. After an
// error the connection is closed.
func (c *Conn) Do(ctx context.Context, req []byte, deadline time.Time) (Answer, error) {
	if err := c.Open(ctx, deadline); err != nil {
		return Answer{}, err
	}
	_ = c.conn.SetDeadline(deadline)
	a, closing, err := c.roundTrip(req)
	switch {
	case TimedOut(err):
		c.abort()
	case err != nil || closing:
		c.Close()
	}
	return a, err
}

// abort closes the connection of a client that gave up with a reset, not
// a FIN: the closing side keeps a closed connection's port a minute
// (TIME_WAIT), and a load whose clients give up by the thousand would run
// out of local ports, its dials crawling through the few left.
func (c *Conn) abort() {
	if tc, ok := c.conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// Open dials the connection if it is not open, giving up at deadline. Do
// opens it anyway; a load generator opens its connections before the
// load, so that its first payments do not wait for a dial.
func (c *Conn) Open(ctx context.Context, deadline time.Time) error {
	if c.conn != nil {
		return nil
	}
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", c.c.addr)
	if err != nil {
		return err
	}
	c.conn = conn
	if c.rd == nil {
		c.rd = bufio.NewReaderSize(conn, 4096)
	} else {
		c.rd.Reset(conn)
	}
	return nil
}

// TimedOut says whether err is Do's deadline passing: the client gave up.
func TimedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// roundTrip writes req and reads the answer's status line, headers and
// body; closing is the server saying it closes the connection.
func (c *Conn) roundTrip(req []byte) (a Answer, closing bool, err error) {
	if _, err := c.conn.Write(req); err != nil {
		return a, false, err
	}
	line, err := c.rd.ReadSlice('\n')
	if err != nil {
		return a, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return a, false, fmt.Errorf("not an HTTP answer: %q", line)
	}
	if a.Status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return a, false, fmt.Errorf("status line %q", line)
	}
	length := -1
	for {
		line, err := c.rd.ReadSlice('\n')
		if err != nil {
			return a, false, err
		}
		h := bytes.TrimRight(line, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, _ := bytes.Cut(h, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return a, false, fmt.Errorf("Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Retry-After")):
			a.RetryAfter = len(value) > 0
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			closing = true
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return a, false, fmt.Errorf("answer with Transfer-Encoding %q: not read here", value)
		}
	}
	if length < 0 {
		return a, false, errors.New("answer without Content-Length")
	}
	if _, err := c.rd.Discard(length); err != nil {
		return a, false, err
	}
	return a, closing, nil
}
