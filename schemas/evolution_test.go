package schemas_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/schemas"
)

// paymentV2 is what a consumer built on evolution/payment_succeeded_v2.avsc
// decodes into.
type paymentV2 struct {
	PaymentID  string             `avro:"payment_id"`
	UserID     int64              `avro:"user_id"`
	Cart       []schemas.CartItem `avro:"cart"`
	TotalCents int64              `avro:"total_cents"`
	Currency   string             `avro:"currency"`
	PaidAt     time.Time          `avro:"paid_at"`
}

func evolutionSchema(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile("evolution/" + file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestEvolutionFiles replays the schema challenge with the files the
// walkthrough in docs/tools.md registers: the registry accepts v2 and
// refuses the incompatible variant with 409; a v1 reader (the order
// service's codec) reads v2 data; a v2 reader reads v1 data, currency
// taking its default.
func TestEvolutionFiles(t *testing.T) {
	cat, reg := newCatalog(t)
	ctx := context.Background()
	subject := schemas.Payments.Subject
	v2text := evolutionSchema(t, "payment_succeeded_v2.avsc")
	bad := sr.Schema{Schema: evolutionSchema(t, "payment_succeeded_v2_incompatible.avsc"), Type: sr.TypeAvro}

	// The registry's own verdicts, before anything is registered.
	if res, err := reg.CheckCompatibility(ctx, subject, -1, sr.Schema{Schema: v2text, Type: sr.TypeAvro}); err != nil || !res.Is {
		t.Fatalf("v2 compatible with v1: %+v, %v; want true", res, err)
	}
	if res, err := reg.CheckCompatibility(ctx, subject, -1, bad); err != nil || res.Is {
		t.Fatalf("incompatible variant: %+v, %v; want false", res, err)
	}
	_, err := reg.CreateSchema(ctx, subject, bad)
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusConflict {
		t.Fatalf("registering currency without default: err = %v, want HTTP 409", err)
	}

	v2, err := reg.CreateSchema(ctx, subject, sr.Schema{Schema: v2text, Type: sr.TypeAvro})
	if err != nil {
		t.Fatalf("registering v2: %v", err)
	}
	if v2.Version != 2 || v2.ID == schemas.Payments.Codec(cat).SchemaID() {
		t.Fatalf("v2 registered as version %d ID %d; want version 2 and a new ID", v2.Version, v2.ID)
	}
	v2schema, err := avro.ParseWithCache(v2text, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	p := payment()

	t.Run("v1 reader reads v2 data", func(t *testing.T) {
		body, err := avro.Marshal(v2schema, paymentV2{p.PaymentID, p.UserID, p.Cart, p.TotalCents, "USD", p.PaidAt})
		if err != nil {
			t.Fatal(err)
		}
		got, err := schemas.Payments.Codec(cat).Decode(ctx, append(binary.BigEndian.AppendUint32([]byte{0}, uint32(v2.ID)), body...))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*got, p) {
			t.Fatalf("got %+v\nwant %+v", *got, p)
		}
	})

	t.Run("v2 reader reads v1 data", func(t *testing.T) {
		v1bytes, err := schemas.Payments.Codec(cat).Encode(&p)
		if err != nil {
			t.Fatal(err)
		}
		// What a v2 consumer does: find the writer's schema by the ID in
		// the header, resolve it against its own, decode.
		ws, err := reg.SchemaByID(ctx, int(binary.BigEndian.Uint32(v1bytes[1:5])))
		if err != nil {
			t.Fatal(err)
		}
		writer, err := avro.ParseWithCache(ws.Schema, "", &avro.SchemaCache{})
		if err != nil {
			t.Fatal(err)
		}
		resolved, err := avro.NewSchemaCompatibility().Resolve(v2schema, writer)
		if err != nil {
			t.Fatalf("v2 cannot read v1: %v", err)
		}
		var got paymentV2
		if err := avro.Unmarshal(resolved, v1bytes[5:], &got); err != nil {
			t.Fatal(err)
		}
		want := paymentV2{p.PaymentID, p.UserID, p.Cart, p.TotalCents, "EUR", p.PaidAt}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
	})
}
