package schemas

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The payment rules. They live here, once, because the HTTP edge refuses a bad
// payment with a 400 and the order service refuses the same payment with a
// DLQ record if it reaches Kafka some other way.
const (
	MaxCartItems      = 100
	MaxItemNameLength = 200
	MaxUnitPriceCents = 1_000_000_00 // one million euros
	MaxQuantity       = 1000
)

// ValidatePayment returns the first rule p breaks, or nil.
func ValidatePayment(p *PaymentSucceeded) *FieldError {
	if p.UserID <= 0 {
		return &FieldError{"user_id", "must be a positive integer"}
	}
	if len(p.Cart) == 0 {
		return &FieldError{"cart", "must hold at least one item"}
	}
	if len(p.Cart) > MaxCartItems {
		return &FieldError{"cart", fmt.Sprintf("must hold at most %d items, has %d", MaxCartItems, len(p.Cart))}
	}
	for i, it := range p.Cart {
		if fe := ValidateItem(i, it); fe != nil {
			return fe
		}
	}
	if total := CartTotal(p.Cart); p.TotalCents != total {
		return &FieldError{"total", fmt.Sprintf("is %s but the cart sums to %s", Euros(p.TotalCents), Euros(total))}
	}
	return nil
}

// ValidateItem checks the i-th line of a cart.
func ValidateItem(i int, it CartItem) *FieldError {
	field := func(name string) string { return fmt.Sprintf("cart[%d].%s", i, name) }
	switch n := utf8.RuneCountInString(it.Name); {
	case strings.TrimSpace(it.Name) == "":
		return &FieldError{field("name"), "must not be blank"}
	case n > MaxItemNameLength:
		return &FieldError{field("name"), fmt.Sprintf("must be at most %d characters, has %d", MaxItemNameLength, n)}
	}
	if it.UnitPriceCents <= 0 {
		return &FieldError{field("price"), "must be more than 0"}
	}
	if it.UnitPriceCents > MaxUnitPriceCents {
		return &FieldError{field("price"), "must be at most 1000000.00"}
	}
	if it.Quantity < 1 || it.Quantity > MaxQuantity {
		return &FieldError{field("quantity"), fmt.Sprintf("must be between 1 and %d", MaxQuantity)}
	}
	return nil
}

// CartTotal is the sum of price times quantity over a cart, in cents.
func CartTotal(cart []CartItem) int64 {
	var total int64
	for _, it := range cart {
		total += it.UnitPriceCents * int64(it.Quantity)
	}
	return total
}
