package main

import (
	"io"
	"log"
	"net"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// mailSink is the mail server the bench's email instances deliver to: it
// takes every message with a 250 and keeps only when each Message-ID first
// arrived, so that the delivery loops do their work as deployed without
// filling anyone's inbox (make kafka-up's Mailpit on :1025 is other
// people's) or this process's memory, and e2e can time payments to the
// inbox. Not infra/mailbox: it keeps every message and also serves an HTTP
// inbox.
type mailSink struct {
	srv *smtp.Server
	ln  net.Listener

	mu      sync.Mutex
	arrived map[string]time.Time // by Message-ID, without its angle brackets
	again   int                  // messages whose Message-ID had arrived before
}

func startMailSink() (*mailSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &mailSink{ln: ln, arrived: make(map[string]time.Time)}
	m.srv = smtp.NewServer(sinkBackend{m})
	m.srv.Domain = "bench.localhost"
	m.srv.ReadTimeout, m.srv.WriteTimeout = time.Minute, time.Minute
	m.srv.MaxMessageBytes = 10 << 20
	m.srv.ErrorLog = log.New(io.Discard, "", 0)
	go func() { _ = m.srv.Serve(ln) }()
	return m, nil
}

// Addr is the sink's SMTP address, for SMTP_ADDR.
func (m *mailSink) Addr() string { return m.ln.Addr().String() }

func (m *mailSink) Close() { _ = m.srv.Close() }

// arrival is when the message with Message-ID id first arrived.
func (m *mailSink) arrival(id string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.arrived[id]
	return at, ok
}

// delivered counts the Message-IDs that arrived, and the messages that
// came again with a Message-ID that had.
func (m *mailSink) delivered() (ids, again int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.arrived), m.again
}

func (m *mailSink) add(id string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.arrived[id]; ok {
		m.again++
		return
	}
	m.arrived[id] = at
}

type sinkBackend struct{ m *mailSink }

func (b sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return sinkSession{b.m}, nil }

type sinkSession struct{ m *mailSink }

func (sinkSession) Reset()                               { /* nothing kept */ }
func (sinkSession) Logout() error                        { return nil }
func (sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s sinkSession) Data(r io.Reader) error {
	at := time.Now()
	msg, err := mail.ReadMessage(r)
	if err != nil {
		_, _ = io.Copy(io.Discard, r)
		return err
	}
	if _, err := io.Copy(io.Discard, msg.Body); err != nil {
		return err
	}
	if id := strings.Trim(msg.Header.Get("Message-ID"), "<>"); id != "" {
		s.m.add(id, at)
	}
	return nil
}
