package email_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/blackfriday-kafka/shop/infra/mailbox"
	"github.com/blackfriday-kafka/shop/services/email"
)

// TestKeptConnectionClosedByTheServer: a mail server that closed the kept
// connection while it idled costs no failed send: the next message goes
// out on a new connection at once. The control: the server that refuses
// every connection still fails the send.
func TestKeptConnectionClosedByTheServer(t *testing.T) {
	srv, err := mailbox.Start(mailbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	s := email.NewSender(email.SMTP{Addr: srv.SMTPAddr})
	ctx := context.Background()
	msg := func(i int) []byte {
		return fmt.Appendf(nil, "Message-ID: <%d@shop.example.com>\r\nSubject: %d\r\n\r\nbody\r\n", i, i)
	}
	if err := s.Send(ctx, "orders@shop.example.com", "user_1@example.com", msg(1)); err != nil {
		t.Fatal(err)
	}
	if n := srv.DropConnections(); n != 1 {
		t.Fatalf("%d connections dropped, want the kept one", n)
	}
	if err := s.Send(ctx, "orders@shop.example.com", "user_1@example.com", msg(2)); err != nil {
		t.Fatalf("after the server closed the kept connection: %v", err)
	}
	if got := len(srv.Messages()); got != 2 {
		t.Fatalf("%d messages in the inbox, want 2", got)
	}
	srv.Close()
	if err := s.Send(ctx, "orders@shop.example.com", "user_1@example.com", msg(3)); err == nil {
		t.Fatal("a send to a server that is gone succeeded")
	}
}
