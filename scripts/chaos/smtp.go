package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/blackfriday-kafka/shop/infra/mailbox"
)

// mailServer is where the email instances deliver during a run: the
// in-process mail server against the embedded cluster, else the one of
// SMTP_ADDR (Mailpit under make kafka-up) with its inbox at MAILPIT_URL.
// The instances reach it through a proxy that chaos cuts.
type mailServer struct {
	upstream string          // the server's SMTP address
	inbox    *mailbox.Client // its inbox, through Mailpit's API
	own      *mailbox.Server // the in-process one, if chaos started it
	proxy    *tcpProxy       // what the instances dial
	rng      *rand.Rand      // when to cut
	next     time.Time       // the next cut
}

// startMailServer starts the in-process mail server when embedded, or
// checks that the inbox at inboxURL answers, then the proxy in front.
func startMailServer(ctx context.Context, o Options, rng *rand.Rand) (*mailServer, error) {
	m := &mailServer{upstream: o.SMTPAddr, rng: rng}
	if o.Embedded {
		own, err := mailbox.Start(mailbox.Config{})
		if err != nil {
			return nil, err
		}
		m.own, m.upstream, m.inbox = own, own.SMTPAddr, mailbox.NewClient(own.URL)
	} else {
		m.inbox = mailbox.NewClient(o.InboxURL)
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := m.inbox.Ready(rctx); err != nil {
			return nil, fmt.Errorf("mail server: %w (make kafka-up runs Mailpit there; SMTP_ADDR and MAILPIT_URL name another)", err)
		}
	}
	var err error
	if m.proxy, err = startProxy(m.upstream); err != nil {
		m.close()
		return nil, err
	}
	m.next = time.Now().Add(cutDelay(rng))
	return m, nil
}

func (m *mailServer) close() {
	if m.proxy != nil {
		m.proxy.close()
	}
	if m.own != nil {
		m.own.Close()
	}
}

// cutDelay is the time to the next cut of the SMTP connections.
func cutDelay(rng *rand.Rand) time.Duration {
	return time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
}

// step cuts the delivery loops' SMTP connections when it is time: every 1
// to 3 seconds, and one time in five an outage of 1 to 3 seconds in which
// the proxy also refuses new connections. It says what it did, or "".
func (m *mailServer) step(now time.Time) string {
	if now.Before(m.next) {
		return ""
	}
	m.next = now.Add(cutDelay(m.rng))
	if m.rng.IntN(5) == 0 {
		d := time.Second + time.Duration(m.rng.Int64N(int64(2*time.Second)))
		n := m.proxy.outage(d)
		return fmt.Sprintf("SMTP down for %.1fs (%d connections cut)", d.Seconds(), n)
	}
	if n := m.proxy.cut(); n > 0 {
		return fmt.Sprintf("%d SMTP connections cut", n)
	}
	return ""
}

// messages counts the inbox's messages by Message-ID.
func (m *mailServer) messages(ctx context.Context) (map[string]int, error) {
	return m.inbox.CountByMessageID(ctx)
}

// tcpProxy forwards TCP connections to a server, and cuts them on demand:
// what a mail server's restart or a network failure does to the delivery
// loop's connection, mid-message or between messages. It can also freeze:
// it then moves no byte either way, and connections made meanwhile are
// accepted but go nowhere, until it thaws; that is what a server stopped
// with SIGSTOP looks like to its clients (the kernel accepts for it,
// nothing answers), for a server chaos runs in its own process.
type tcpProxy struct {
	ln       net.Listener
	upstream string

	mu      sync.Mutex
	conns   map[net.Conn]net.Conn // client side -> server side
	downTil time.Time
	thawed  chan struct{} // closed while the proxy is not frozen
	cuts    int           // connections cut
	faults  int           // cuts and outages that cut at least one connection
}

func startProxy(upstream string) (*tcpProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &tcpProxy{ln: ln, upstream: upstream, conns: make(map[net.Conn]net.Conn), thawed: make(chan struct{})}
	close(p.thawed)
	go p.serve()
	return p, nil
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := time.Now().Before(p.downTil)
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		go p.forward(c)
	}
}

func (p *tcpProxy) forward(c net.Conn) {
	p.waitThawed()
	u, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c] = u
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.copy(u, c); done <- struct{}{} }()
	go func() { p.copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// copy moves bytes from src to dst, holding each read while frozen.
func (p *tcpProxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.waitThawed()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *tcpProxy) waitThawed() {
	p.mu.Lock()
	thawed := p.thawed
	p.mu.Unlock()
	<-thawed
}

// freeze stops every byte until thaw.
func (p *tcpProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
		p.thawed = make(chan struct{})
	default:
	}
}

func (p *tcpProxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
	default:
		close(p.thawed)
	}
}

// cut closes every connection open now and returns how many.
func (p *tcpProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns)
	for c, u := range p.conns {
		c.Close()
		u.Close()
		delete(p.conns, c)
	}
	p.cuts += n
	if n > 0 {
		p.faults++
	}
	return n
}

// outage cuts every connection and refuses new ones for d.
func (p *tcpProxy) outage(d time.Duration) int {
	p.mu.Lock()
	p.downTil = time.Now().Add(d)
	p.mu.Unlock()
	n := p.cut()
	p.mu.Lock()
	if n == 0 {
		p.faults++ // an outage is a fault even with nothing to cut
	}
	p.mu.Unlock()
	return n
}

func (p *tcpProxy) counts() (cuts, faults int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts, p.faults
}

func (p *tcpProxy) close() {
	p.thaw()
	p.ln.Close()
	p.cut()
}
