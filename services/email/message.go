package email

import (
	"bytes"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"unicode"

	"github.com/blackfriday-kafka/shop/schemas"
)

// The shop's side of every confirmation.
const (
	// From is the sender of every confirmation, in the header and the
	// envelope.
	From = "orders@shop.example.com"
	// FromName is the sender's display name.
	FromName = "Black Friday Shop"
	// messageDomain is the right-hand side of every Message-ID.
	messageDomain = "shop.example.com"
)

// MessageID is the Message-ID of the confirmation email emailID, without
// its angle brackets, as Mailpit's API shows it: derived from email_id, so
// a message sent again after a crash is recognisably the same message.
func MessageID(emailID string) string { return emailID + "@" + messageDomain }

// Message is the confirmation e as an RFC 5322 message with CRLF line
// endings: From, To, Subject, Date, Message-ID and a text body with the
// order's lines and total. Every byte comes from e (Date is when the email
// was committed), so a resend is byte for byte the same message.
func Message(e *schemas.EmailSent) []byte {
	var b bytes.Buffer
	header := func(name, value string) { fmt.Fprintf(&b, "%s: %s\r\n", name, value) }
	header("From", (&mail.Address{Name: FromName, Address: From}).String())
	header("To", (&mail.Address{Address: e.To}).String())
	header("Subject", mime.QEncoding.Encode("utf-8", oneLine(e.Subject)))
	header("Date", e.SentAt.UTC().Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	header("Message-ID", "<"+MessageID(e.EmailID)+">")
	header("X-Shop-Order-ID", oneLine(e.OrderID))
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(Body(e), "\n", "\r\n")))
	_ = qp.Close()
	return b.Bytes()
}

// Body is the text of the confirmation of e, lines ending in \n.
func Body(e *schemas.EmailSent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Hello,\n\nthank you for your order %s. We received your payment for:\n\n", e.OrderID)
	for _, it := range e.Items {
		line := schemas.Euros(it.UnitPriceCents * int64(it.Quantity))
		fmt.Fprintf(&b, "  %4d x %-40s %12s EUR\n", it.Quantity, oneLine(it.Name), line)
	}
	fmt.Fprintf(&b, "\nTotal: %s EUR\n\nBlack Friday Shop\n", schemas.Euros(e.TotalCents))
	return b.String()
}

// oneLine keeps a value on its line: a control character (a line break in
// a product name, say) becomes a space.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}
