package access_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/blackfriday-kafka/shop/infra/access"
)

// TestReadmeShowsTheTable: the README prints the access table as
// access.Print writes it, so a grant added to the code and not to the
// README (or the other way round) fails here.
func TestReadmeShowsTheTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := access.Print(&table); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, table.Bytes()) {
		t.Fatalf("README.md does not show the access table as access.Print writes it; paste this into its code block:\n\n%s", table.String())
	}
}
