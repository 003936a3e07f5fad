package schemas

import (
	"fmt"
	"math"
	"testing"
)

// Euros formats by appending digits; fmt with %d.%02d is the reference.
func TestEurosStringMatchesReference(t *testing.T) {
	values := []int64{0, 1, 9, 10, 99, 100, 101, 199900, 123456789, math.MaxInt64, -1, -99, -100, -250, math.MinInt64 + 1}
	for v := int64(1); v < 1e15; v = v*7 + 3 {
		values = append(values, v, -v)
	}
	for _, v := range values {
		abs, sign := v, ""
		if v < 0 {
			abs, sign = -v, "-"
		}
		want := fmt.Sprintf("%s%d.%02d", sign, abs/100, abs%100)
		if got := Euros(v).String(); got != want {
			t.Errorf("Euros(%d) = %q, want %q", v, got, want)
		}
		if got, _ := Euros(v).MarshalJSON(); string(got) != want {
			t.Errorf("Euros(%d) as JSON = %s, want %s", v, got, want)
		}
	}
}
