package email

import (
	"bytes"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/blackfriday-kafka/shop/schemas"
)

func queuedEmail() *schemas.EmailSent {
	o := schemas.OrderCreated{OrderID: schemas.OrderID("p1"), UserID: 42, TotalCents: 201890,
		Items: []schemas.OrderItem{{Name: "MacBook", UnitPriceCents: 199900, Quantity: 1}, {Name: "Cable\r\nBcc: x@evil.example", UnitPriceCents: 995, Quantity: 2}}}
	to, subject := Confirmation(&o)
	return &schemas.EmailSent{EmailID: schemas.EmailID(o.OrderID), OrderID: o.OrderID, UserID: o.UserID, To: to, Subject: subject,
		Status: Queued, SentAt: time.Date(2026, 11, 27, 9, 30, 15, 123e6, time.UTC), Items: o.Items, TotalCents: o.TotalCents}
}

// The confirmation is a well-formed message: the headers a mail client
// shows, a Message-ID derived from email_id, CRLF lines a mail server
// accepts, the order's lines and total in the text, and the same bytes
// every time it is built, so that a resend is the same message.
func TestMessageFormat(t *testing.T) {
	e := queuedEmail()
	raw := Message(e)
	if !bytes.Equal(raw, Message(e)) {
		t.Fatal("two builds of one email differ")
	}
	for i, line := range bytes.Split(raw, []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			t.Fatalf("line %d has a bare CR or LF: %q", i, line)
		}
		if len(line) > 78 {
			t.Errorf("line %d is %d characters, more than RFC 5322's 78: %q", i, len(line), line)
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	h := msg.Header
	from, err := mail.ParseAddress(h.Get("From"))
	if err != nil || from.Address != From || from.Name != FromName {
		t.Errorf("From = %q (%v), want %s <%s>", h.Get("From"), err, FromName, From)
	}
	to, err := h.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Address != "user_42@example.com" {
		t.Errorf("To = %q (%v), want user_42@example.com alone", h.Get("To"), err)
	}
	if len(h["Bcc"]) > 0 {
		t.Errorf("a product name added a header: Bcc %q", h["Bcc"])
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil || subject != e.Subject {
		t.Errorf("Subject = %q (%v), want %q", subject, err, e.Subject)
	}
	if date, err := h.Date(); err != nil || !date.Equal(e.SentAt.Truncate(time.Second)) {
		t.Errorf("Date = %q (%v), want the commit time %s", h.Get("Date"), err, e.SentAt)
	}
	if got, want := h.Get("Message-ID"), "<"+e.EmailID+"@shop.example.com>"; got != want {
		t.Errorf("Message-ID = %q, want %q", got, want)
	}
	if MessageID(e.EmailID) != e.EmailID+"@shop.example.com" {
		t.Errorf("MessageID(%s) = %s", e.EmailID, MessageID(e.EmailID))
	}
	if ct := h.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	for _, want := range []string{e.OrderID, "1 x MacBook", "1999.00 EUR", "2 x Cable  Bcc: x@evil.example", "19.90 EUR", "Total: 2018.90 EUR"} {
		if !strings.Contains(text, want) {
			t.Errorf("body lacks %q:\n%s", want, text)
		}
	}
	if strings.Count(text, "\r\n") != strings.Count(Body(e), "\n") {
		t.Errorf("body lines do not all end in CRLF:\n%q", text)
	}
}
