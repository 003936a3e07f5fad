// Package shoppers makes the valid payments of many users, as the payment
// service would write them, and the bodies shoppers post to POST /payment:
// the load of flood, chaos, bench and overload.
package shoppers

import (
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/blackfriday-kafka/shop/schemas"
)

// products are what Black Friday shoppers buy, with prices in cents.
var products = []schemas.CartItem{
	{Name: "MacBook Pro", UnitPriceCents: 199900},
	{Name: "iPhone 15", UnitPriceCents: 99900},
	{Name: "AirPods Pro", UnitPriceCents: 27900},
	{Name: "PlayStation 5", UnitPriceCents: 49999},
	{Name: "Nintendo Switch", UnitPriceCents: 29999},
	{Name: "Kindle", UnitPriceCents: 8999},
	{Name: "OLED TV 55\"", UnitPriceCents: 129900},
	{Name: "Noise-cancelling headphones", UnitPriceCents: 34900},
	{Name: "Espresso machine", UnitPriceCents: 12950},
	{Name: "Smart watch", UnitPriceCents: 24900},
}

// Payment is a valid payment by a random user for a random cart, as the
// payment service would write it.
func Payment(r *rand.Rand, users int) schemas.PaymentSucceeded {
	cart := make([]schemas.CartItem, 1+r.IntN(3))
	for i := range cart {
		cart[i] = products[r.IntN(len(products))]
		cart[i].Quantity = int32(1 + r.IntN(2))
	}
	return schemas.PaymentSucceeded{
		PaymentID:  uuid.NewString(),
		UserID:     1 + r.Int64N(int64(users)),
		Cart:       cart,
		TotalCents: schemas.CartTotal(cart),
		PaidAt:     time.Now().UTC().Truncate(time.Millisecond),
	}
}

// AppendBody appends the JSON body with which userID pays at POST
// /payment for a cart of 1 to maxLines random lines, prices in euros with
// two decimals. It allocates nothing once dst has room, for load
// generators that post thousands a second.
func AppendBody(dst []byte, r *rand.Rand, userID int64, maxLines int) []byte {
	dst = append(dst, `{"user_id":`...)
	dst = strconv.AppendInt(dst, userID, 10)
	dst = append(dst, `,"cart":[`...)
	for i := range 1 + r.IntN(maxLines) {
		if i > 0 {
			dst = append(dst, ',')
		}
		p := products[r.IntN(len(products))]
		dst = append(dst, `{"name":`...)
		dst = strconv.AppendQuote(dst, p.Name) // the names are printable ASCII: valid JSON
		dst = append(dst, `,"price":`...)
		dst = schemas.Euros(p.UnitPriceCents).Append(dst)
		dst = append(dst, `,"quantity":`...)
		dst = strconv.AppendInt(dst, int64(1+r.IntN(2)), 10)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}
