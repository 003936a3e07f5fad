package schemas

import (
	"strings"
	"testing"

	"github.com/google/uuid"
)

// The derived IDs are a contract: a retried transaction must write the same
// ones, so they must stay exactly uuid.NewSHA1's, for names of any length.
func TestDerivedIDsAreUUIDv5(t *testing.T) {
	names := []string{"", "5f0c1d7e-3b7a-4a51-9f51-6a1c3c1f2b10", "x", strings.Repeat("long name ", 20)}
	for i := range 50 {
		names = append(names, uuid.NewString(), strings.Repeat("é", i))
	}
	for _, name := range names {
		if got, want := OrderID(name), uuid.NewSHA1(orderNamespace, []byte(name)).String(); got != want {
			t.Errorf("OrderID(%q) = %s, want %s", name, got, want)
		}
		if got, want := EmailID(name), uuid.NewSHA1(emailNamespace, []byte(name)).String(); got != want {
			t.Errorf("EmailID(%q) = %s, want %s", name, got, want)
		}
	}
	// Fixed values, so that a change of namespace cannot go unnoticed.
	const payment = "5f0c1d7e-3b7a-4a51-9f51-6a1c3c1f2b10"
	if got := OrderID(payment); got != "406a01f6-da3c-51a2-a3df-93c7d383cdc8" {
		t.Errorf("OrderID(%s) = %s, changed", payment, got)
	}
	if got := EmailID(OrderID(payment)); got != "acccae38-c670-5a73-8924-951da1c7cfe2" {
		t.Errorf("EmailID(OrderID(%s)) = %s, changed", payment, got)
	}
}
