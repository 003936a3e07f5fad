package schemas

import (
	"errors"
	"math/big"
	"strconv"
)

// Euros is an amount of money in integer cents. Kafka records carry cents;
// people and JSON see euros with exactly two decimals, never a float.
type Euros int64

// String formats as euros with two decimals, such as "1999.00".
func (e Euros) String() string {
	cents := int64(e)
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	frac := strconv.FormatInt(cents%100, 10)
	if len(frac) == 1 {
		frac = "0" + frac
	}
	return sign + strconv.FormatInt(cents/100, 10) + "." + frac
}

// MarshalJSON writes a JSON number exact to the cent.
func (e Euros) MarshalJSON() ([]byte, error) { return []byte(e.String()), nil }

var errNotCents = errors.New("must be an amount in euros with at most two decimals")

// ParseEuros reads a decimal amount of euros ("19.99", "1999", "2e3") into
// cents, refusing anything that is not a whole number of cents.
func ParseEuros(s string) (Euros, error) {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0, errNotCents
	}
	r.Mul(r, big.NewRat(100, 1))
	if !r.IsInt() || !r.Num().IsInt64() {
		return 0, errNotCents
	}
	return Euros(r.Num().Int64()), nil
}
