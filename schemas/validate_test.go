package schemas_test

import (
	"strings"
	"testing"

	"github.com/blackfriday-kafka/shop/schemas"
)

func TestValidatePayment(t *testing.T) {
	item := func(name string, cents int64, qty int32) schemas.CartItem {
		return schemas.CartItem{Name: name, UnitPriceCents: cents, Quantity: qty}
	}
	many := func(n int) []schemas.CartItem {
		cart := make([]schemas.CartItem, n)
		for i := range cart {
			cart[i] = item("sock", 100, 1)
		}
		return cart
	}
	for _, tc := range []struct {
		name      string
		user      int64
		cart      []schemas.CartItem
		total     int64 // -1: the cart's own total
		wantField string
	}{
		{"valid", 42, []schemas.CartItem{item("MacBook", 199900, 1)}, -1, ""},
		{"largest valid cart", 1, many(100), -1, ""},
		{"highest price and quantity", 1, []schemas.CartItem{item("yacht", 100_000_000, 1000)}, -1, ""},
		{"200-character name", 1, []schemas.CartItem{item(strings.Repeat("é", 200), 1, 1)}, -1, ""},
		{"user 0", 0, []schemas.CartItem{item("a", 1, 1)}, -1, "user_id"},
		{"negative user", -3, []schemas.CartItem{item("a", 1, 1)}, -1, "user_id"},
		{"empty cart", 1, nil, 0, "cart"},
		{"101 items", 1, many(101), -1, "cart"},
		{"empty name", 1, []schemas.CartItem{item("", 1, 1)}, -1, "cart[0].name"},
		{"blank name", 1, []schemas.CartItem{item("a", 1, 1), item(" \t", 1, 1)}, -1, "cart[1].name"},
		{"201-character name", 1, []schemas.CartItem{item(strings.Repeat("x", 201), 1, 1)}, -1, "cart[0].name"},
		{"10,000-character name", 1, []schemas.CartItem{item(strings.Repeat("x", 10_000), 1, 1)}, -1, "cart[0].name"},
		{"zero price", 1, []schemas.CartItem{item("a", 0, 1)}, -1, "cart[0].price"},
		{"negative price", 1, []schemas.CartItem{item("a", -500, 1)}, -1, "cart[0].price"},
		{"price over a million euros", 1, []schemas.CartItem{item("a", 100_000_001, 1)}, -1, "cart[0].price"},
		{"zero quantity", 1, []schemas.CartItem{item("a", 1, 0)}, -1, "cart[0].quantity"},
		{"quantity 1001", 1, []schemas.CartItem{item("a", 1, 1001)}, -1, "cart[0].quantity"},
		{"total off by a cent", 1, []schemas.CartItem{item("a", 150, 2)}, 299, "total"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := payment()
			p.UserID, p.Cart, p.TotalCents = tc.user, tc.cart, tc.total
			if tc.total < 0 {
				p.TotalCents = schemas.CartTotal(tc.cart)
			}
			fe := schemas.ValidatePayment(&p)
			switch {
			case tc.wantField == "" && fe != nil:
				t.Fatalf("valid payment refused: %v", fe)
			case tc.wantField != "" && fe == nil:
				t.Fatalf("invalid payment accepted, want an error on %s", tc.wantField)
			case fe != nil && fe.Field != tc.wantField:
				t.Fatalf("error on %q (%v), want %q", fe.Field, fe, tc.wantField)
			}
		})
	}
}

func TestEuros(t *testing.T) {
	for _, tc := range []struct {
		in    string
		cents int64
		out   string
	}{
		{"1999", 199900, "1999.00"},
		{"19.99", 1999, "19.99"},
		{"19.9", 1990, "19.90"},
		{"0.01", 1, "0.01"},
		{"1e3", 100000, "1000.00"},
		{"-2.5", -250, "-2.50"},
		{"1.999e3", 199900, "1999.00"},
		{"1000e-5", 1, "0.01"},
		{"10e-3", 1, "0.01"},
		{"0.000", 0, "0.00"},
		{"1000000.00", 100000000, "1000000.00"},
		{"0E+0", 0, "0.00"},
	} {
		got, err := schemas.ParseEuros(tc.in)
		if err != nil || int64(got) != tc.cents || got.String() != tc.out {
			t.Errorf("ParseEuros(%q) = %d %q %v, want %d %q", tc.in, got, got, err, tc.cents, tc.out)
		}
	}
	for _, bad := range []string{"19.999", "0.001", "abc", "", "1e30", "1e-3", "1.2.3", "e5", "1e", "--1", "1e999999999",
		"1e-999999999", "99999999999999999.99", strings.Repeat("9", 33), "1_000"} {
		if _, err := schemas.ParseEuros(bad); err == nil {
			t.Errorf("ParseEuros(%q) accepted", bad)
		}
	}
}

// TestEurosCostsNothingWhateverTheText: a price of any length or exponent
// is read in a few steps, without arbitrary-precision arithmetic.
func TestEurosCostsNothingWhateverTheText(t *testing.T) {
	for _, s := range []string{strings.Repeat("9", 900_000), "1e999999999", "1e-999999999", "9" + strings.Repeat("0", 31)} {
		if allocs := testing.AllocsPerRun(10, func() { _, _ = schemas.ParseEuros(s) }); allocs > 2 {
			t.Errorf("ParseEuros of %d characters: %.0f allocations", len(s), allocs)
		}
	}
}
