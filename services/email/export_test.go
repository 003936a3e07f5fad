package email

import (
	"context"
	"net"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/txn/sink"
)

// CrashAfterSend makes the loop of cfg stop, as SIGKILL would, right
// after the mail server took an email that crash names, before the offset
// commits; Run then returns ErrCrash.
func CrashAfterSend(cfg *CourierConfig, crash func(*schemas.EmailSent) bool) {
	cfg.crashAfterSend = crash
}

// ErrCrash is what Run returns after such a crash.
var ErrCrash = sink.ErrKilled

// Send sends one message as the delivery loop does, on a connection kept
// across calls of the same Sender.
type Sender struct{ s *sender }

func NewSender(cfg SMTP) *Sender { return &Sender{newSender(cfg)} }

func (s *Sender) Send(ctx context.Context, from, to string, msg []byte) error {
	return s.s.send(ctx, from, to, msg)
}

// NewSenderDialing is NewSender, its connections made by dial: a test's
// way to a server that seems elsewhere than on this machine.
func NewSenderDialing(cfg SMTP, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *Sender {
	s := newSender(cfg)
	s.dial = dial
	return &Sender{s}
}
