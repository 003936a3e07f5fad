package shoppers

import (
	"math/rand/v2"
	"testing"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/payment"
)

// TestAppendBody: every body is a payment the payment service accepts, of
// its user, with 1 to maxLines lines of the catalogue's products at their
// prices; both lengths of cart occur.
func TestAppendBody(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	prices := map[string]int64{}
	for _, p := range products {
		prices[p.Name] = p.UnitPriceCents
	}
	lengths := map[int]int{}
	var buf []byte
	for i := range 500 {
		user := int64(1_000_000_000_000 + i)
		buf = AppendBody(buf[:0], r, user, 2)
		req, fe := payment.ParseRequest(buf)
		if fe != nil {
			t.Fatalf("%s: %v", buf, fe)
		}
		if req.UserID != user {
			t.Fatalf("%s: user %d, want %d", buf, req.UserID, user)
		}
		for j, it := range req.Cart {
			if fe := schemas.ValidateItem(j, it); fe != nil || prices[it.Name] != it.UnitPriceCents {
				t.Fatalf("%s: line %d %+v (%v), want the catalogue's price %d", buf, j, it, fe, prices[it.Name])
			}
		}
		lengths[len(req.Cart)]++
	}
	if len(lengths) != 2 || lengths[1] == 0 || lengths[2] == 0 {
		t.Fatalf("cart lengths %v, want 1 and 2", lengths)
	}
}
