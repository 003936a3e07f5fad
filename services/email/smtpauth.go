package email

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// authenticate signs in to the mail server on c with AUTH PLAIN when the
// configuration has credentials and the server offers AUTH, and returns
// the client to go on with. The password goes out over TLS only: STARTTLS
// whenever the server offers it (on a new connection, which begins with
// it), the server's certificate verified. Without STARTTLS it goes out in
// clear only to a loopback address (a mail server on this machine, as the
// dev stacks run) or with PlainAuth (SMTP_PLAIN_AUTH=1); otherwise nothing
// is sent and the send fails as an outage does, so the email waits and is
// not lost. On an error c is closed.
func (s *sender) authenticate(ctx context.Context, c *smtp.Client, remote net.Addr) (*smtp.Client, error) {
	auth := s.cfg.Auth
	if auth.Username == "" || auth.Password == "" {
		return c, nil
	}
	if _, secure := c.TLSConnectionState(); !secure {
		if ok, _ := c.Extension("STARTTLS"); ok {
			c.Close()
			var err error
			if c, remote, err = s.open(ctx, s.tlsConfig()); err != nil {
				return nil, err
			}
		} else if !loopback(remote) && !s.cfg.PlainAuth {
			c.Close()
			return nil, fmt.Errorf("mail server %s (%s) offers no STARTTLS: the password of %s is not sent in clear; SMTP_PLAIN_AUTH=1 allows it",
				s.cfg.Addr, remote, auth.Username)
		}
	}
	if ok, _ := c.Extension("AUTH"); !ok {
		return c, nil
	}
	if err := c.Auth(sasl.NewPlainClient("", auth.Username, auth.Password)); err != nil {
		c.Close()
		return nil, fmt.Errorf("mail server %s: authenticate as %s: %w", s.cfg.Addr, auth.Username, err)
	}
	return c, nil
}

// tlsConfig is the configuration of STARTTLS: SMTP.TLS, or the system's
// roots, verifying the host of SMTP_ADDR.
func (s *sender) tlsConfig() *tls.Config {
	cfg := &tls.Config{}
	if s.cfg.TLS != nil {
		cfg = s.cfg.TLS.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(s.cfg.Addr)
	}
	return cfg
}

// loopback says whether a connection's remote address is on this machine.
func loopback(remote net.Addr) bool {
	tcp, ok := remote.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
