package payment

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

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

// ParseRequest reads a payment request, naming the first field that is
// missing or of the wrong type. The business rules (ranges, totals) are
// checked afterwards by schemas.ValidatePayment, as the order service does.
func ParseRequest(body []byte) (*Request, *schemas.FieldError) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, &schemas.FieldError{Field: "body", Reason: "must be a JSON object such as {\"user_id\": 42, \"cart\": [{\"name\": \"MacBook\", \"price\": 1999, \"quantity\": 1}]}"}
	}
	userID, fe := integer(top, "user_id", "user_id", math.MaxInt64)
	if fe != nil {
		return nil, fe
	}
	rawCart, ok := top["cart"]
	if !ok || isNull(rawCart) {
		return nil, &schemas.FieldError{Field: "cart", Reason: "is required"}
	}
	var lines []json.RawMessage
	if err := json.Unmarshal(rawCart, &lines); err != nil {
		return nil, &schemas.FieldError{Field: "cart", Reason: "must be a list of items"}
	}
	req := &Request{UserID: userID, Cart: make([]schemas.CartItem, 0, len(lines))}
	for i, line := range lines {
		item, fe := parseItem(i, line)
		if fe != nil {
			return nil, fe
		}
		req.Cart = append(req.Cart, item)
	}
	return req, nil
}

func parseItem(i int, line json.RawMessage) (schemas.CartItem, *schemas.FieldError) {
	path := func(name string) string { return fmt.Sprintf("cart[%d]%s", i, name) }
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil || fields == nil {
		return schemas.CartItem{}, &schemas.FieldError{Field: path(""), Reason: "must be an object with name, price and quantity"}
	}
	var item schemas.CartItem
	rawName, ok := fields["name"]
	if !ok || isNull(rawName) {
		return item, &schemas.FieldError{Field: path(".name"), Reason: "is required"}
	}
	if err := json.Unmarshal(rawName, &item.Name); err != nil {
		return item, &schemas.FieldError{Field: path(".name"), Reason: "must be a string"}
	}
	rawPrice, ok := fields["price"]
	if !ok || isNull(rawPrice) {
		return item, &schemas.FieldError{Field: path(".price"), Reason: "is required"}
	}
	var price json.Number
	if err := unmarshalNumber(rawPrice, &price); err != nil {
		return item, &schemas.FieldError{Field: path(".price"), Reason: "must be a number of euros"}
	}
	cents, err := schemas.ParseEuros(price.String())
	if err != nil {
		return item, &schemas.FieldError{Field: path(".price"), Reason: err.Error()}
	}
	item.UnitPriceCents = int64(cents)
	qty, fe := integer(fields, "quantity", path(".quantity"), math.MaxInt32)
	if fe != nil {
		return item, fe
	}
	item.Quantity = int32(qty)
	return item, nil
}

// integer reads fields[name] as a whole number no larger than limit.
func integer(fields map[string]json.RawMessage, name, path string, limit int64) (int64, *schemas.FieldError) {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		return 0, &schemas.FieldError{Field: path, Reason: "is required"}
	}
	var n json.Number
	if err := unmarshalNumber(raw, &n); err != nil {
		return 0, &schemas.FieldError{Field: path, Reason: "must be an integer"}
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil || v > limit {
		return 0, &schemas.FieldError{Field: path, Reason: "must be an integer"}
	}
	return v, nil
}

// unmarshalNumber accepts a JSON number only, not a numeric string.
func unmarshalNumber(raw json.RawMessage, n *json.Number) error {
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '"' {
		return fmt.Errorf("a string is not a number")
	}
	return json.Unmarshal(raw, n)
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }
