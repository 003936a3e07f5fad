package payment

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/blackfriday-kafka/shop/schemas"
)

// Request is what a client posts to /payment. Prices are in euros.
type Request struct {
	UserID int64
	Cart   []schemas.CartItem
}

// Item is a cart line as the HTTP API shows it: price in euros.
type Item struct {
	Name     string        `json:"name"`
	Price    schemas.Euros `json:"price"`
	Quantity int32         `json:"quantity"`
}

// Response is the answer to an accepted payment.
type Response struct {
	Status    string        `json:"status"`
	PaymentID string        `json:"payment_id"`
	UserID    int64         `json:"user_id"`
	Cart      []Item        `json:"cart"`
	Total     schemas.Euros `json:"total"`
	Topic     string        `json:"topic"`
	Partition int32         `json:"partition"`
	Offset    int64         `json:"offset"`
}

// maxNumberText bounds the text of a number, before anything reads its
// value: a price of a million euros with its cents, in any JSON spelling
// a client would use, fits many times over.
const maxNumberText = 32

var errBody = &schemas.FieldError{Field: "body", Reason: "must be a JSON object such as {\"user_id\": 42, \"cart\": [{\"name\": \"MacBook\", \"price\": 1999, \"quantity\": 1}]}"}

// ParseRequest reads a payment request, naming the first field that is
// missing or of the wrong type. The business rules (ranges, totals) are
// checked afterwards by schemas.ValidatePayment, as the order service does.
func ParseRequest(body []byte) (*Request, *schemas.FieldError) {
	req, err := ReadRequest(bytes.NewReader(body))
	if err != nil {
		return nil, err.(*schemas.FieldError) // a byte slice reads whole
	}
	return req, nil
}

// ReadRequest reads a payment request from r as ParseRequest does, token
// by token, so that the work a body costs is bounded before it is done: a
// cart is refused at its first item that is no object and at its item past
// the most a cart holds, a number at its length, a name given twice
// anywhere in the body at once. What r fails with (a body too large, a
// read timed out) is returned as a *ReadError; what the body says wrong,
// as a *schemas.FieldError.
func ReadRequest(r io.Reader) (*Request, error) {
	d := &requestDecoder{dec: jsontext.NewDecoder(r)}
	req, fe := d.request()
	if fe == nil && d.err == nil {
		// One object, nothing after it.
		if _, err := d.dec.ReadToken(); !errors.Is(err, io.EOF) {
			d.fail(err, errBody)
		}
	}
	switch {
	case d.readErr != nil:
		return nil, d.readErr
	case d.err != nil:
		return nil, d.err
	case fe != nil:
		return nil, fe
	}
	return req, nil
}

// ReadError is a body that could not be read whole: Err says why (an
// *http.MaxBytesError, a timeout, a client gone).
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return "body: " + e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }

// requestDecoder walks a request's JSON.
type requestDecoder struct {
	dec     *jsontext.Decoder
	err     *schemas.FieldError // the first error the decoder itself met
	readErr *ReadError          // or the reader's
}

// fail records why the decoder stopped: a duplicate name, named by its
// path; the reader's error; a body that is no JSON; or, when err is nil
// (the value was read, but is not what the field takes), want.
func (d *requestDecoder) fail(err error, want *schemas.FieldError) *schemas.FieldError {
	var se *jsontext.SyntacticError
	switch {
	case err == nil:
		d.err = want
	case errors.As(err, &se) && errors.Is(se.Err, jsontext.ErrDuplicateName):
		d.err = &schemas.FieldError{Field: fieldPath(se.JSONPointer), Reason: "is given more than once"}
	case !errors.As(err, &se) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF):
		d.readErr = &ReadError{Err: err}
		d.err = &schemas.FieldError{Field: "body", Reason: "could not be read: " + err.Error()}
	default:
		d.err = errBody
	}
	return d.err
}

func (d *requestDecoder) request() (*Request, *schemas.FieldError) {
	if d.dec.PeekKind() != '{' {
		return nil, d.fail(d.dec.SkipValue(), errBody)
	}
	req := &Request{}
	var seenUser, seenCart bool
	fe := d.object(func(name string) (fe *schemas.FieldError, known bool) {
		switch name {
		case "user_id":
			seenUser = true
			req.UserID, fe = d.integer("user_id", math.MaxInt64)
		case "cart":
			seenCart = true
			req.Cart, fe = d.cart()
		default:
			return nil, false
		}
		return fe, true
	})
	switch {
	case fe != nil:
		return nil, fe
	case !seenUser:
		return nil, &schemas.FieldError{Field: "user_id", Reason: "is required"}
	case !seenCart:
		return nil, &schemas.FieldError{Field: "cart", Reason: "is required"}
	}
	return req, nil
}

// object reads the object the decoder is at, handing each member's name to
// member, which reads its value; a name member does not know (known false)
// has its value skipped. A name given twice is the decoder's error.
func (d *requestDecoder) object(member func(name string) (fe *schemas.FieldError, known bool)) *schemas.FieldError {
	if _, err := d.dec.ReadToken(); err != nil { // {
		return d.fail(err, errBody)
	}
	for d.dec.PeekKind() != '}' {
		name, err := d.dec.ReadToken()
		if err != nil {
			return d.fail(err, errBody)
		}
		fe, known := member(name.String())
		if !known {
			if err := d.dec.SkipValue(); err != nil {
				fe = d.fail(err, errBody)
			}
		}
		if fe != nil {
			return fe
		}
	}
	if _, err := d.dec.ReadToken(); err != nil { // }
		return d.fail(err, errBody)
	}
	return nil
}

func (d *requestDecoder) cart() ([]schemas.CartItem, *schemas.FieldError) {
	switch d.dec.PeekKind() {
	case 'n':
		return nil, &schemas.FieldError{Field: "cart", Reason: "is required"}
	case '[':
	default:
		return nil, d.fail(d.dec.SkipValue(), &schemas.FieldError{Field: "cart", Reason: "must be a list of items"})
	}
	if _, err := d.dec.ReadToken(); err != nil {
		return nil, d.fail(err, errBody)
	}
	var cart []schemas.CartItem
	for i := 0; d.dec.PeekKind() != ']'; i++ {
		if i == schemas.MaxCartItems {
			return nil, &schemas.FieldError{Field: "cart", Reason: fmt.Sprintf("must hold at most %d items", schemas.MaxCartItems)}
		}
		item, fe := d.item(i)
		if fe != nil {
			return nil, fe
		}
		cart = append(cart, item)
	}
	if _, err := d.dec.ReadToken(); err != nil {
		return nil, d.fail(err, errBody)
	}
	return cart, nil
}

func (d *requestDecoder) item(i int) (schemas.CartItem, *schemas.FieldError) {
	var item schemas.CartItem
	path := "cart[" + strconv.Itoa(i) + "]"
	if d.dec.PeekKind() != '{' {
		return item, d.fail(d.dec.SkipValue(), &schemas.FieldError{Field: path, Reason: "must be an object with name, price and quantity"})
	}
	var seenName, seenPrice, seenQuantity bool
	fe := d.object(func(name string) (fe *schemas.FieldError, known bool) {
		switch name {
		case "name":
			seenName = true
			item.Name, fe = d.name(path + ".name")
		case "price":
			seenPrice = true
			item.UnitPriceCents, fe = d.price(path + ".price")
		case "quantity":
			seenQuantity = true
			var q int64
			q, fe = d.integer(path+".quantity", math.MaxInt32)
			item.Quantity = int32(q)
		default:
			return nil, false
		}
		return fe, true
	})
	switch {
	case fe != nil:
		return item, fe
	case !seenName:
		return item, &schemas.FieldError{Field: path + ".name", Reason: "is required"}
	case !seenPrice:
		return item, &schemas.FieldError{Field: path + ".price", Reason: "is required"}
	case !seenQuantity:
		return item, &schemas.FieldError{Field: path + ".quantity", Reason: "is required"}
	}
	return item, nil
}

func (d *requestDecoder) name(path string) (string, *schemas.FieldError) {
	switch d.dec.PeekKind() {
	case 'n':
		return "", d.fail(d.dec.SkipValue(), &schemas.FieldError{Field: path, Reason: "is required"})
	case '"':
		tok, err := d.dec.ReadToken()
		if err != nil {
			return "", d.fail(err, errBody)
		}
		return tok.String(), nil
	}
	return "", d.fail(d.dec.SkipValue(), &schemas.FieldError{Field: path, Reason: "must be a string"})
}

// number reads a JSON number's text, at most maxNumberText long.
func (d *requestDecoder) number(path, what string) (string, *schemas.FieldError) {
	switch d.dec.PeekKind() {
	case 'n':
		return "", d.fail(d.dec.SkipValue(), &schemas.FieldError{Field: path, Reason: "is required"})
	case '0':
	default:
		return "", d.fail(d.dec.SkipValue(), &schemas.FieldError{Field: path, Reason: "must be " + what})
	}
	v, err := d.dec.ReadValue()
	if err != nil {
		return "", d.fail(err, errBody)
	}
	if len(v) > maxNumberText {
		return "", &schemas.FieldError{Field: path, Reason: fmt.Sprintf("must be %s of at most %d characters", what, maxNumberText)}
	}
	return string(v), nil
}

// integer reads a whole number no larger than limit.
func (d *requestDecoder) integer(path string, limit int64) (int64, *schemas.FieldError) {
	s, fe := d.number(path, "an integer")
	if fe != nil {
		return 0, fe
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > limit {
		return 0, &schemas.FieldError{Field: path, Reason: "must be an integer"}
	}
	return n, nil
}

func (d *requestDecoder) price(path string) (int64, *schemas.FieldError) {
	s, fe := d.number(path, "a number of euros")
	if fe != nil {
		return 0, fe
	}
	cents, err := schemas.ParseEuros(s)
	if err != nil {
		return 0, &schemas.FieldError{Field: path, Reason: err.Error()}
	}
	return int64(cents), nil
}

// fieldPath spells a JSON pointer as the API names fields: /cart/0/price
// is cart[0].price.
func fieldPath(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if _, err := strconv.Atoi(tok); err == nil && b.Len() > 0 {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	if b.Len() == 0 {
		return "body"
	}
	return b.String()
}
