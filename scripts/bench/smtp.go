package main

import (
	"io"
	"log"
	"net"
	"time"

	"github.com/emersion/go-smtp"
)

// mailSink is the mail server the bench's email instances deliver to: it
// takes every message with a 250 and keeps nothing, so that the delivery
// loops do their work as deployed without filling anyone's inbox (make
// kafka-up's Mailpit on :1025 is other people's) or this process's memory.
// Not infra/mailbox: it keeps every message and also serves an HTTP inbox.
type mailSink struct {
	srv *smtp.Server
	ln  net.Listener
}

func startMailSink() (*mailSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &mailSink{ln: ln}
	m.srv = smtp.NewServer(sinkBackend{})
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

type sinkBackend struct{}

func (sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return sinkSession{}, nil }

type sinkSession struct{}

func (sinkSession) Reset()                               { /* nothing kept */ }
func (sinkSession) Logout() error                        { return nil }
func (sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (sinkSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
