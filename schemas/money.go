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
func (e Euros) String() string { return string(e.Append(make([]byte, 0, 24))) }

// Append appends e as String formats it to b.
func (e Euros) Append(b []byte) []byte {
	cents := uint64(e)
	if e < 0 {
		b = append(b, '-')
		cents = -cents
	}
	b = strconv.AppendUint(b, cents/100, 10)
	b = append(b, '.', byte('0'+cents%100/10), byte('0'+cents%10))
	return b
}

// MarshalJSON writes a JSON number exact to the cent.
func (e Euros) MarshalJSON() ([]byte, error) { return e.Append(nil), nil }

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
