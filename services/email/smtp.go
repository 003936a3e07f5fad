package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/blackfriday-kafka/shop/services/config"
)

// SMTP is where and how the delivery loop hands confirmations over.
type SMTP struct {
	Addr string // host:port
	// Auth, when it has a user and a password, signs in with AUTH PLAIN
	// if the server offers AUTH: over TLS, or in clear to a loopback
	// address or with PlainAuth (see authenticate).
	Auth      config.Credentials
	PlainAuth bool
	TLS       *tls.Config // for STARTTLS; nil verifies the server with the system's roots
	// DialTimeout bounds connecting and the greeting; CommandTimeout each
	// command's reply; SubmissionTimeout the reply to the message's final
	// dot, when the server takes it on.
	DialTimeout, CommandTimeout, SubmissionTimeout time.Duration
}

func (c *SMTP) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.DialTimeout, 5*time.Second)
	def(&c.CommandTimeout, 10*time.Second)
	def(&c.SubmissionTimeout, 30*time.Second)
}

// RejectedError is a confirmation the mail server refused for good: a 5xx reply
// to MAIL, RCPT or DATA. Reply is the server's, such as
// "550 5.1.1 mailbox unavailable".
type RejectedError struct{ Reply string }

func (r *RejectedError) Error() string { return "rejected by the mail server: " + r.Reply }

// sender is one SMTP connection, opened when needed and kept across
// messages; any failure that may have broken it closes it, and the next
// message dials again.
type sender struct {
	cfg  SMTP
	name string // what it says in EHLO
	c    *smtp.Client
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func newSender(cfg SMTP) *sender {
	cfg.defaults()
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "localhost"
	}
	d := &net.Dialer{Timeout: cfg.DialTimeout}
	return &sender{cfg: cfg, name: name, dial: d.DialContext}
}

// send hands one message to the server. nil means the server took
// responsibility for it (250 after the final dot); *Rejected, that it
// refused it for good; any other error may pass (the server is down, slow
// or answered 4xx), and the message is to be sent again.
func (s *sender) send(ctx context.Context, from, to string, msg []byte) error {
	reused := s.c != nil
	if !reused {
		if err := s.connect(ctx); err != nil {
			return err
		}
	}
	err := s.transaction(from, to, msg)
	var se *smtp.SMTPError
	if err != nil && reused && !errors.As(err, &se) {
		// A kept connection gone without a reply, most often closed by
		// the server while it idled: one new connection before this
		// counts as a failure. What the old one may have delivered is
		// sent again under the same Message-ID, as any retry would.
		s.close()
		if err := s.connect(ctx); err != nil {
			return err
		}
		err = s.transaction(from, to, msg)
	}
	if err == nil {
		return nil
	}
	if !errors.As(err, &se) || se.Code == 421 {
		// The connection is gone or going (421: the server is
		// shutting the channel): dial again next time.
		s.close()
		return err
	}
	// A reply: the connection is fine, the transaction is not. RSET
	// starts the next one afresh.
	if rerr := s.c.Reset(); rerr != nil {
		s.close()
	}
	if se.Code/100 == 5 {
		return &RejectedError{Reply: reply(se)}
	}
	return err
}

// transaction is MAIL, RCPT and DATA on the open connection.
func (s *sender) transaction(from, to string, msg []byte) error {
	if err := s.c.Mail(from, nil); err != nil {
		return err
	}
	if err := s.c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := s.c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		_ = w.Close()
		return err
	}
	return w.Close() // reads the reply to the final dot
}

// connect connects, reads the greeting, says EHLO and authenticates if
// asked to. A refusal here (a 554 greeting, a failed AUTH) is the server's
// or the configuration's, not the message's: it is retried like an outage.
func (s *sender) connect(ctx context.Context) error {
	c, remote, err := s.open(ctx, nil)
	if err != nil {
		return err
	}
	if c, err = s.authenticate(ctx, c, remote); err != nil {
		return err
	}
	s.c = c
	return nil
}

// open connects, reads the greeting and says EHLO; with tlsCfg, after
// STARTTLS. It returns the server's address as connected.
func (s *sender) open(ctx context.Context, tlsCfg *tls.Config) (*smtp.Client, net.Addr, error) {
	conn, err := s.dial(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to the mail server %s: %w", s.cfg.Addr, err)
	}
	c := smtp.NewClient(conn)
	if tlsCfg != nil {
		// The greeting, a first EHLO and STARTTLS, each within
		// CommandTimeout.
		_ = conn.SetDeadline(time.Now().Add(3 * s.cfg.CommandTimeout))
		if c, err = smtp.NewClientStartTLS(conn, tlsCfg); err != nil {
			return nil, nil, fmt.Errorf("mail server %s: STARTTLS: %w", s.cfg.Addr, err)
		}
		_ = conn.SetDeadline(time.Time{})
	}
	c.CommandTimeout, c.SubmissionTimeout = s.cfg.CommandTimeout, s.cfg.SubmissionTimeout
	if err := c.Hello(s.name); err != nil { // the greeting and each reply within CommandTimeout
		c.Close()
		return nil, nil, fmt.Errorf("mail server %s: hello: %w", s.cfg.Addr, err)
	}
	return c, conn.RemoteAddr(), nil
}

// close drops the connection, politely when it still answers.
func (s *sender) close() {
	if s.c == nil {
		return
	}
	_ = s.c.Close()
	s.c = nil
}

// quit ends the session with QUIT, at shutdown.
func (s *sender) quit() {
	if s.c == nil {
		return
	}
	_ = s.c.Quit()
	s.close()
}

// reply is an SMTP error as the server said it: "550 5.1.1 text".
func reply(se *smtp.SMTPError) string {
	parts := []string{fmt.Sprintf("%03d", se.Code)}
	if ec := se.EnhancedCode; ec != smtp.NoEnhancedCode && ec != smtp.EnhancedCodeNotSet {
		parts = append(parts, fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2]))
	}
	if se.Message != "" {
		parts = append(parts, se.Message)
	}
	return strings.Join(parts, " ")
}
