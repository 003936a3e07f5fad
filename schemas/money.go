package schemas

import (
	"errors"
	"strconv"
	"strings"
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

var (
	errNotCents = errors.New("must be an amount in euros with at most two decimals")
	errTooLarge = errors.New("must be an amount in euros of at most 17 digits")
)

// maxEurosText bounds the text ParseEuros reads: longer is refused before
// any arithmetic.
const maxEurosText = 32

// ParseEuros reads a decimal amount of euros ("19.99", "1999", "2e3",
// "1.999e3") into cents, refusing anything that is not a whole number of
// cents or does not fit. It works on the digits, so that no exponent or
// length makes it do more than a few dozen steps.
func ParseEuros(s string) (Euros, error) {
	if len(s) > maxEurosText {
		return 0, errNotCents
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil {
			return 0, errNotCents
		}
		mant, exp = s[:i], e
	}
	neg := false
	switch {
	case strings.HasPrefix(mant, "-"):
		neg, mant = true, mant[1:]
	case strings.HasPrefix(mant, "+"):
		mant = mant[1:]
	}
	whole, frac, _ := strings.Cut(mant, ".")
	digits := whole + frac
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, errNotCents
	}
	// The amount is digits × 10^shift cents.
	shift := exp - len(frac) + 2
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return 0, nil
	}
	if shift < 0 {
		if -shift >= len(digits) || strings.TrimLeft(digits[len(digits)+shift:], "0") != "" {
			return 0, errNotCents // a fraction of a cent
		}
		digits, shift = digits[:len(digits)+shift], 0
	}
	if len(digits)+shift > 18 {
		return 0, errTooLarge
	}
	cents, err := strconv.ParseInt(digits+strings.Repeat("0", shift), 10, 64)
	if err != nil {
		return 0, errTooLarge
	}
	if neg {
		cents = -cents
	}
	return Euros(cents), nil
}
