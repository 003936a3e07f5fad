// Package mailbox is the mail server of the embedded stack: a real SMTP
// listener (github.com/emersion/go-smtp) that keeps every message it accepts
// in memory, and an inbox a person can read, a small page and a JSON API in
// the shape of Mailpit's (GET /api/v1/messages, /api/v1/message/{ID}/raw,
// /readyz), so that one Client reads it and the Mailpit of make kafka-up and
// make up alike.
//
// It is what make run delivers to when SMTP_ADDR is not set, what make chaos
// runs against its own embedded cluster, and what the tests deliver to. It
// accepts any sender, any recipient (unless Reject matches it) and any AUTH
// PLAIN credentials, as a mail catcher does.
package mailbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/blackfriday-kafka/shop/infra/webserver"
)

// Config places the mail server. Empty addresses pick free ports on
// 127.0.0.1, which is what tests want; make run asks for 1025 and 8025.
type Config struct {
	SMTPAddr string // default 127.0.0.1:0
	HTTPAddr string // the inbox; default 127.0.0.1:0
	// Reject, if set, refuses the recipients it matches with 550 5.1.1,
	// as a mail server refuses a mailbox it does not have: a permanent
	// rejection, for tests of the dead-letter path.
	Reject *regexp.Regexp
	Logger *slog.Logger
}

// Address is a mailbox of a message's header, as Mailpit's API shows it.
type Address struct {
	Name    string `json:"Name"`
	Address string `json:"Address"`
}

// Summary is a message as the list of Mailpit's API shows it: MessageID is
// the Message-ID header without its angle brackets.
type Summary struct {
	ID        string    `json:"ID"`
	MessageID string    `json:"MessageID"`
	From      *Address  `json:"From"`
	To        []Address `json:"To"`
	Subject   string    `json:"Subject"`
	Created   time.Time `json:"Created"`
	Size      int       `json:"Size"`
	Snippet   string    `json:"Snippet"`
}

// Message is a message the server accepted: its summary, its envelope,
// its raw bytes and its decoded text.
type Message struct {
	Summary
	EnvelopeFrom string
	EnvelopeTo   []string
	Raw          []byte
	Text         string // the body, transfer encoding undone
}

// Server is the running mail server.
type Server struct {
	SMTPAddr string // host:port it accepts mail on
	URL      string // its inbox, such as http://127.0.0.1:8025

	cfg  Config
	log  *slog.Logger
	smtp *smtp.Server
	http *http.Server
	ln   *trackingListener

	mu   sync.Mutex
	msgs []*Message // oldest first
	seq  int
}

// Start listens on both addresses and serves until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.SMTPAddr == "" {
		cfg.SMTPAddr = "127.0.0.1:0"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	sln, err := net.Listen("tcp", cfg.SMTPAddr)
	if err != nil {
		return nil, fmt.Errorf("mailbox: SMTP on %s: %w", cfg.SMTPAddr, err)
	}
	hln, err := webserver.Listen(cfg.HTTPAddr)
	if err != nil {
		sln.Close()
		return nil, fmt.Errorf("mailbox: inbox on %s: %w", cfg.HTTPAddr, err)
	}
	s.ln = &trackingListener{Listener: sln, conns: make(map[net.Conn]struct{})}
	s.SMTPAddr, s.URL = sln.Addr().String(), "http://"+hln.Addr().String()

	s.smtp = smtp.NewServer(backend{s})
	s.smtp.Domain = "mailbox.localhost"
	s.smtp.AllowInsecureAuth = true
	s.smtp.ReadTimeout = time.Minute
	s.smtp.WriteTimeout = time.Minute
	s.smtp.MaxMessageBytes = 10 << 20
	s.smtp.MaxRecipients = 100
	s.smtp.ErrorLog = slogLogger{s.log}
	s.http = webserver.New(s.routes(), s.log)
	go func() {
		if err := s.smtp.Serve(s.ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			s.log.Error("mailbox: SMTP server stopped", "err", err)
		}
	}()
	go func() {
		if err := s.http.Serve(hln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("mailbox: inbox stopped", "err", err)
		}
	}()
	return s, nil
}

// Close stops both listeners and drops every connection.
func (s *Server) Close() {
	_ = s.smtp.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
}

// DropConnections closes every SMTP connection open now, as a mail server
// that restarts or a network that fails would; the listener stays. It
// returns how many it closed.
func (s *Server) DropConnections() int { return s.ln.dropAll() }

// Messages returns every message accepted so far, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.msgs))
	for i, m := range s.msgs {
		out[i] = *m
	}
	return out
}

// Delete forgets every message.
func (s *Server) Delete() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = nil
}

// store keeps one accepted message.
func (s *Server) store(from string, to []string, raw []byte) {
	m := parse(raw)
	m.EnvelopeFrom, m.EnvelopeTo = from, to
	if len(m.To) == 0 {
		for _, rcpt := range to {
			m.To = append(m.To, Address{Address: rcpt})
		}
	}
	s.mu.Lock()
	s.seq++
	m.ID = strconv.Itoa(s.seq)
	m.Created = time.Now().UTC()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
	s.log.Debug("mailbox: message accepted", "id", m.ID, "message_id", m.MessageID, "to", to, "subject", m.Subject)
}

// parse reads the headers and the text of a message. A message that does
// not parse is kept all the same, raw, as a mail catcher keeps it.
func parse(raw []byte) *Message {
	m := &Message{Raw: raw}
	m.Size = len(raw)
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return m
	}
	h := msg.Header
	m.MessageID = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(h.Get("Message-ID")), "<"), ">")
	dec := new(mime.WordDecoder)
	if subject, err := dec.DecodeHeader(h.Get("Subject")); err == nil {
		m.Subject = subject
	} else {
		m.Subject = h.Get("Subject")
	}
	if from, err := mail.ParseAddress(h.Get("From")); err == nil {
		m.From = &Address{Name: from.Name, Address: from.Address}
	}
	if to, err := h.AddressList("To"); err == nil {
		for _, a := range to {
			m.To = append(m.To, Address{Name: a.Name, Address: a.Address})
		}
	}
	var body io.Reader = msg.Body
	if strings.EqualFold(h.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	text, _ := io.ReadAll(body)
	m.Text = string(text)
	m.Snippet = snippet(m.Text)
	return m
}

// snippet is the start of a text on one line, as Mailpit shows it.
func snippet(text string) string {
	s := strings.Join(strings.Fields(text), " ")
	if r := []rune(s); len(r) > 250 {
		s = string(r[:250]) + "…"
	}
	return s
}

// backend makes a session per SMTP connection.
type backend struct{ s *Server }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: b.s}, nil }

// session is one SMTP connection: its current envelope.
type session struct {
	s    *Server
	from string
	to   []string
}

func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain} }

// Auth accepts any credentials, as a mail catcher does.
func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error { return nil }), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if r := ss.s.cfg.Reject; r != nil && r.MatchString(to) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "mailbox unavailable: " + to}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.store(ss.from, ss.to, raw)
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }

// trackingListener remembers the connections it accepted, so that they
// can be dropped.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

func (l *trackingListener) dropAll() int {
	l.mu.Lock()
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	return len(conns)
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// slogLogger is go-smtp's error log on slog.
type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) {
	l.log.Debug("mailbox: " + fmt.Sprintf(format, v...))
}
func (l slogLogger) Println(v ...any) { l.log.Debug("mailbox: " + fmt.Sprintln(v...)) }
