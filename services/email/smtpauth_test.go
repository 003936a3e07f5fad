package email_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/blackfriday-kafka/shop/services/config"
	"github.com/blackfriday-kafka/shop/services/email"
)

// authServer is a mail server that records every AUTH it gets, with
// whether it came over TLS, and offers STARTTLS when it has a certificate.
type authServer struct {
	addr  string
	mu    sync.Mutex
	auths []authSeen
	mails int
}

type authSeen struct {
	user, pass string
	tls        bool
}

func startAuthServer(t *testing.T, cert *tls.Config) *authServer {
	t.Helper()
	as := &authServer{}
	srv := smtp.NewServer(authBackend{as})
	srv.Domain = "mail.shop.test"
	srv.AllowInsecureAuth = true // the server would take it: the client must not send it
	srv.TLSConfig = cert
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	as.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return as
}

func (as *authServer) seen() ([]authSeen, int) {
	as.mu.Lock()
	defer as.mu.Unlock()
	return append([]authSeen{}, as.auths...), as.mails
}

type authBackend struct{ as *authServer }

func (b authBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &authSession{as: b.as, c: c}, nil
}

type authSession struct {
	as *authServer
	c  *smtp.Conn
}

func (s *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *authSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		_, secure := s.c.TLSConnectionState()
		s.as.mu.Lock()
		defer s.as.mu.Unlock()
		s.as.auths = append(s.as.auths, authSeen{user, pass, secure})
		return nil
	}), nil
}

func (s *authSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *authSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *authSession) Data(r io.Reader) error {
	_, _ = io.Copy(io.Discard, r)
	s.as.mu.Lock()
	defer s.as.mu.Unlock()
	s.as.mails++
	return nil
}
func (s *authSession) Reset()        {}
func (s *authSession) Logout() error { return nil }

// farAway dials addr but shows the connection as one to 192.0.2.25, an
// address that is not this machine's.
func farAway(addr string) func(ctx context.Context, network, _ string) (net.Conn, error) {
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return remoteConn{c}, nil
	}
}

type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.ParseIP("192.0.2.25"), Port: 25} }

// testCert is httptest's certificate, for 127.0.0.1 and example.com, and
// the roots that trust it.
func testCert(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	defer ts.Close()
	roots := ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	return &tls.Config{Certificates: ts.TLS.Certificates}, &tls.Config{RootCAs: roots}
}

// TestSMTPPasswordOnlyOverTLS: the SMTP password goes out over STARTTLS
// when the server offers it, in clear only to this machine or with
// SMTP_PLAIN_AUTH=1, and never in clear to a server elsewhere; it shows in
// no print of the configuration.
func TestSMTPPasswordOnlyOverTLS(t *testing.T) {
	const password = "hunter2-smtp"
	serverTLS, clientTLS := testCert(t)
	auth := config.Credentials{Mechanism: "PLAIN", Username: "shop", Password: password}
	msg := []byte("Message-ID: <1@shop.example.com>\r\nSubject: 1\r\n\r\nbody\r\n")
	cases := []struct {
		name      string
		starttls  bool
		far       bool
		plainAuth bool
		sent      bool // the message went out
		authTLS   []bool
	}{
		{name: "STARTTLS offered, a server elsewhere", starttls: true, far: true, sent: true, authTLS: []bool{true}},
		{name: "STARTTLS offered, this machine", starttls: true, sent: true, authTLS: []bool{true}},
		{name: "no STARTTLS, a server elsewhere", far: true, sent: false},
		{name: "no STARTTLS, a server elsewhere, SMTP_PLAIN_AUTH=1", far: true, plainAuth: true, sent: true, authTLS: []bool{false}},
		{name: "no STARTTLS, this machine", sent: true, authTLS: []bool{false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var cert *tls.Config
			if tc.starttls {
				cert = serverTLS
			}
			srv := startAuthServer(t, cert)
			cfg := email.SMTP{Addr: srv.addr, Auth: auth, PlainAuth: tc.plainAuth, TLS: clientTLS, DialTimeout: 5 * time.Second}
			s := email.NewSender(cfg)
			if tc.far {
				cfg.Addr = "example.com:25" // the certificate's name
				s = email.NewSenderDialing(cfg, farAway(srv.addr))
			}
			err := s.Send(context.Background(), "orders@shop.example.com", "user_1@example.com", msg)
			auths, mails := srv.seen()
			if tc.sent != (err == nil) || tc.sent != (mails == 1) {
				t.Fatalf("sent %v (err %v, %d mails), want %v", err == nil, err, mails, tc.sent)
			}
			if err != nil && (!strings.Contains(err.Error(), "SMTP_PLAIN_AUTH=1") || strings.Contains(err.Error(), password)) {
				t.Fatalf("the refusal %q: want it to name SMTP_PLAIN_AUTH=1, and no password", err)
			}
			if len(auths) != len(tc.authTLS) {
				t.Fatalf("%d AUTH commands, want %d: %+v", len(auths), len(tc.authTLS), auths)
			}
			for i, a := range auths {
				if a.user != "shop" || a.pass != password || a.tls != tc.authTLS[i] {
					t.Fatalf("AUTH %d: %+v, want over TLS %v", i, a, tc.authTLS[i])
				}
			}
		})
	}
}

// TestSMTPCertificateVerified: STARTTLS to a server whose certificate
// this machine does not trust fails, and the password stays here.
func TestSMTPCertificateVerified(t *testing.T) {
	serverTLS, _ := testCert(t)
	srv := startAuthServer(t, serverTLS)
	s := email.NewSender(email.SMTP{Addr: srv.addr, Auth: config.Credentials{Username: "shop", Password: "pw"}})
	err := s.Send(context.Background(), "orders@shop.example.com", "user_1@example.com", []byte("Subject: 1\r\n\r\nbody\r\n"))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("send through an untrusted certificate: %v", err)
	}
	if auths, _ := srv.seen(); len(auths) != 0 {
		t.Fatalf("AUTH sent through an untrusted certificate: %+v", auths)
	}
}
