package mailbox_test

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/blackfriday-kafka/shop/infra/mailbox"
	"github.com/blackfriday-kafka/shop/infra/webserver/webservertest"
)

func message(id, to string) string {
	return "From: Shop <orders@shop.example.com>\r\nTo: <" + to + ">\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\n" +
		"Message-ID: <" + id + ">\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nTotal: 1999.00 EUR =\r\nand more\r\n"
}

// The server takes mail over real SMTP, refuses the recipients it is told
// to with a 5xx, and shows what it took through Mailpit's API: newest
// first, Message-ID without its brackets, the raw bytes as received.
func TestMailboxSpeaksSMTPAndMailpitsAPI(t *testing.T) {
	mb, err := mailbox.Start(mailbox.Config{Reject: regexp.MustCompile(`^nobody@`)})
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	c, err := smtp.Dial(mb.SMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range []struct{ id, to string }{{"a@shop", "user_1@example.com"}, {"b@shop", "user_2@example.com"}} {
		if err := c.SendMail("orders@shop.example.com", []string{m.to}, strings.NewReader(message(m.id, m.to))); err != nil {
			t.Fatal(err)
		}
	}
	err = c.SendMail("orders@shop.example.com", []string{"nobody@example.com"}, strings.NewReader(message("c@shop", "nobody@example.com")))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("a refused recipient: %v, want a 550", err)
	}

	ctx := context.Background()
	inbox := mailbox.NewClient(mb.URL)
	if err := inbox.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	msgs, err := inbox.Messages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].MessageID != "b@shop" || msgs[1].MessageID != "a@shop" {
		t.Fatalf("messages = %+v, want b@shop then a@shop", msgs)
	}
	if m := msgs[1]; m.Subject != "Café" || m.From.Address != "orders@shop.example.com" || m.To[0].Address != "user_1@example.com" ||
		m.Snippet != "Total: 1999.00 EUR and more" {
		t.Fatalf("summary = %+v", m)
	}
	raw, err := inbox.Raw(ctx, msgs[1].ID)
	if err != nil || string(raw) != message("a@shop", "user_1@example.com") {
		t.Fatalf("raw = %q (%v)", raw, err)
	}
	if n := mb.DropConnections(); n != 1 {
		t.Fatalf("dropped %d connections, want the one open", n)
	}
	if err := c.Noop(); err == nil {
		t.Fatal("the dropped connection still answers")
	}
}

// TestInboxIsBounded: the inbox's server cuts a client whose request
// trickles in, and refuses headers of a megabyte.
func TestInboxIsBounded(t *testing.T) {
	mb, err := mailbox.Start(mailbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	t.Run("headers", func(t *testing.T) { webservertest.RefusesHugeHeaders(t, mb.URL, "/api/v1/messages") })
	t.Run("trickle", func(t *testing.T) { webservertest.ClosesTrickle(t, mb.URL, "/api/v1/messages") })
	t.Run("paging", func(t *testing.T) {
		for _, q := range []string{"limit=abc", "limit=-1", "start=x", "start=99999999999"} {
			resp, err := http.Get(mb.URL + "/api/v1/messages?" + q)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("?%s: %d, want 400", q, resp.StatusCode)
			}
		}
	})
}
