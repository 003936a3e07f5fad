package console_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/scripts/console"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
	"github.com/blackfriday-kafka/shop/txn/deadletter"
)

type env struct {
	stack *infra.Embedded
	cat   *schemas.Catalog
	reg   *sr.Client
}

func start(t *testing.T) env {
	t.Helper()
	stack, cat := shoptest.Cluster(t)
	reg, err := schemas.NewRegistryClient(stack.RegistryURL)
	if err != nil {
		t.Fatal(err)
	}
	return env{stack, cat, reg}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func (e env) produce(t *testing.T, opts console.ProduceOptions, input string) ([]console.Sent, console.Produced) {
	t.Helper()
	opts.Brokers = e.stack.Brokers
	var out bytes.Buffer
	res, err := console.Produce(ctx(t), e.reg, opts, strings.NewReader(input), &out)
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	var sent []console.Sent
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var s console.Sent
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatalf("produce printed %q: %v", l, err)
		}
		sent = append(sent, s)
	}
	return sent, res
}

// consume reads n records of topic from the beginning and returns the
// printed lines, decoded as generic JSON.
func (e env) consume(t *testing.T, opts console.ConsumeOptions, n int) []map[string]any {
	t.Helper()
	opts.Brokers, opts.FromBeginning, opts.Max = e.stack.Brokers, true, n
	if opts.Idle == 0 {
		opts.Idle = 5 * time.Second
	}
	var out bytes.Buffer
	got, err := console.Consume(ctx(t), e.reg, opts, &out)
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	if got != n {
		t.Fatalf("consume printed %d records, want %d:\n%s", got, n, out.String())
	}
	if n == 0 {
		return nil
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("consume printed %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func fetch(t *testing.T, brokers []string, topic string, partition int32, offset int64) *kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(offset)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for {
		fs := cl.PollRecords(ctx(t), 1)
		if err := ctx(t).Err(); err != nil {
			t.Fatal(err)
		}
		if recs := fs.Records(); len(recs) > 0 {
			return recs[0]
		}
	}
}

const payment = `{"payment_id": "5f0c1d7e-3b7a-4a51-9f51-6a1c3c1f2b10", "user_id": 42, "cart": [{"name": "MacBook", "unit_price_cents": 199900, "quantity": 1}, {"name": "Mouse", "unit_price_cents": 1990, "quantity": 2}], "total_cents": 203880, "paid_at": "2026-11-27T09:30:00.123Z"}`

// TestConsumeDecodesWhatProduceEncodes: a JSON line goes in, the services'
// own codec reads the record as that payment, and the console consumer
// prints the same JSON back.
func TestConsumeDecodesWhatProduceEncodes(t *testing.T) {
	e := start(t)
	minimal := `{"user_id": 7, "cart": [{"name": "Socks", "unit_price_cents": 500, "quantity": 3}], "total_cents": 1500}`
	sent, res := e.produce(t, console.ProduceOptions{Topic: schemas.Payments.Name}, payment+"\n\n"+minimal+"\n")
	if res.Records != 2 || res.SchemaID != schemas.Payments.Codec(e.cat).SchemaID() || res.Version != 1 {
		t.Fatalf("produced %+v, want 2 records with the build's schema ID %d, version 1", res, schemas.Payments.Codec(e.cat).SchemaID())
	}
	if *sent[0].Key != "42" || *sent[1].Key != "7" || sent[0].Line != 1 || sent[1].Line != 3 {
		t.Fatalf("sent %+v %+v: want keys 42 and 7 from lines 1 and 3", sent[0], sent[1])
	}

	// The services read it as the payment typed.
	r := fetch(t, e.stack.Brokers, schemas.Payments.Name, sent[0].Partition, sent[0].Offset)
	p, err := schemas.Payments.Codec(e.cat).Decode(ctx(t), r.Value)
	if err != nil {
		t.Fatal(err)
	}
	want := schemas.PaymentSucceeded{PaymentID: "5f0c1d7e-3b7a-4a51-9f51-6a1c3c1f2b10", UserID: 42,
		Cart:       []schemas.CartItem{{Name: "MacBook", UnitPriceCents: 199900, Quantity: 1}, {Name: "Mouse", UnitPriceCents: 1990, Quantity: 2}},
		TotalCents: 203880, PaidAt: time.Date(2026, 11, 27, 9, 30, 0, 123e6, time.UTC)}
	if !reflect.DeepEqual(*p, want) {
		t.Fatalf("the order service's codec reads\n %+v\nwant %+v", *p, want)
	}
	if fe := schemas.ValidatePayment(p); fe != nil {
		t.Fatalf("typed payment is invalid: %v", fe)
	}

	// The console prints it back.
	lines := e.consume(t, console.ConsumeOptions{Topics: []string{schemas.Payments.Name}}, 2)
	byKey := map[string]map[string]any{}
	for _, l := range lines {
		byKey[l["key"].(string)] = l
	}
	l := byKey["42"]
	var typed any
	json.Unmarshal([]byte(payment), &typed)
	if !reflect.DeepEqual(l["value"], typed) {
		t.Fatalf("consumed value\n %v\nwant %v", l["value"], typed)
	}
	if l["topic"] != schemas.Payments.Name || l["offset"] != float64(sent[0].Offset) || l["schema_id"] != float64(res.SchemaID) {
		t.Fatalf("consumed line %v", l)
	}
	// The minimal line got a payment ID and a time.
	v := byKey["7"]["value"].(map[string]any)
	if len(v["payment_id"].(string)) != 36 || v["paid_at"] == "" {
		t.Fatalf("minimal payment printed as %v", v)
	}

	// Field order follows the schema, for people.
	var out bytes.Buffer
	console.Consume(ctx(t), e.reg, console.ConsumeOptions{Brokers: e.stack.Brokers, Topics: []string{schemas.Payments.Name},
		FromBeginning: true, Max: 1}, &out)
	if !regexpOrder(out.String(), `"topic"`, `"partition"`, `"offset"`, `"key"`, `"value"`, `"payment_id"`, `"user_id"`, `"cart"`, `"total_cents"`, `"paid_at"`) {
		t.Fatalf("fields out of order: %s", out.String())
	}
}

func regexpOrder(s string, keys ...string) bool {
	at := 0
	for _, k := range keys {
		i := strings.Index(s[at:], k)
		if i < 0 {
			return false
		}
		at += i + len(k)
	}
	return true
}

func TestProduceRefusesWhatDoesNotFit(t *testing.T) {
	e := start(t)
	for name, line := range map[string]string{
		"unknown field":    `{"user_id": 1, "cart": [], "total_cents": 0, "price": 3}`,
		"missing field":    `{"user_id": 1, "cart": []}`,
		"wrong type":       `{"user_id": "one", "cart": [], "total_cents": 0}`,
		"not JSON":         `{"user_id": 1,`,
		"int out of range": `{"user_id": 1, "cart": [{"name": "x", "unit_price_cents": 1, "quantity": 3000000000}], "total_cents": 0}`,
		"bad uuid":         `{"payment_id": "nope", "user_id": 1, "cart": [], "total_cents": 0}`,
	} {
		t.Run(name, func(t *testing.T) {
			in := payment + "\n" + line + "\n"
			_, err := console.Produce(ctx(t), e.reg, console.ProduceOptions{Brokers: e.stack.Brokers, Topic: schemas.Payments.Name},
				strings.NewReader(in), &bytes.Buffer{})
			if err == nil || !strings.HasPrefix(err.Error(), "line 2: ") {
				t.Fatalf("err = %v, want one naming line 2", err)
			}
		})
	}
	// Nothing was sent, not even the good first lines.
	e.consume(t, console.ConsumeOptions{Topics: []string{schemas.Payments.Name}, Idle: 2 * time.Second}, 0)
}

// TestRawPoisonAndDeadLetters: --raw sends hand-made poison as typed, the
// consumer shows why it does not decode, and a dead letter shows its
// reason and the original bytes.
func TestRawPoisonAndDeadLetters(t *testing.T) {
	e := start(t)
	pill := `{"user_id": 42, "cart": "oops"}`
	sent, res := e.produce(t, console.ProduceOptions{Topic: schemas.Payments.Name, Raw: true}, pill+"\n\n")
	if res.Records != 2 || res.SchemaID != 0 || *sent[0].Key != "42" || sent[1].Key != nil {
		t.Fatalf("raw produce: %+v %+v", res, sent)
	}
	lines := e.consume(t, console.ConsumeOptions{Topics: []string{schemas.Payments.Name}}, 2)
	classes := map[string]bool{}
	for _, l := range lines {
		de := l["decode_error"].(map[string]any)
		classes[de["class"].(string)] = true
		if de["class"] == "bad-magic-byte" && l["value"] != base64.StdEncoding.EncodeToString([]byte(pill)) {
			t.Fatalf("poison bytes printed as %v", l["value"])
		}
	}
	if !classes["bad-magic-byte"] || !classes["empty-value"] {
		t.Fatalf("decode errors %v, want bad-magic-byte and empty-value", classes)
	}

	src := fetch(t, e.stack.Brokers, schemas.Payments.Name, sent[0].Partition, sent[0].Offset)
	dl, err := deadletter.Letters{Codec: schemas.PaymentDLQ.Codec(e.cat), Service: "order"}.Record(src, "bad-magic-byte", errors.New("not Avro"))
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := kgo.NewClient(kgo.SeedBrokers(e.stack.Brokers...))
	defer cl.Close()
	if err := cl.ProduceSync(ctx(t), dl).FirstErr(); err != nil {
		t.Fatal(err)
	}
	l := e.consume(t, console.ConsumeOptions{Topics: []string{schemas.PaymentDLQ.Name}, Bytes: console.Hex}, 1)[0]
	if l["error_class"] != "bad-magic-byte" || l["error"] != "not Avro" || l["original_text"] != pill ||
		l["original_key"] != "42" || l["original_value"] != console.Hex.Encode([]byte(pill)) {
		t.Fatalf("dead letter line: %v", l)
	}
	if h := l["headers"].(map[string]any); h["error.class"] != "bad-magic-byte" || h["source.topic"] != schemas.Payments.Name {
		t.Fatalf("dead letter headers: %v", h)
	}

	// A dead letter printed in base64 goes back in as it came out
	// (nullable bytes, timestamps): replaying a DLQ is jq and a pipe.
	b64 := e.consume(t, console.ConsumeOptions{Topics: []string{schemas.PaymentDLQ.Name}}, 1)[0]
	line, _ := json.Marshal(b64["value"])
	e.produce(t, console.ProduceOptions{Topic: schemas.PaymentDLQ.Name, Bytes: console.Base64}, string(line)+"\n")
	again := e.consume(t, console.ConsumeOptions{Topics: []string{schemas.PaymentDLQ.Name}}, 2)
	if !reflect.DeepEqual(again[0]["value"], again[1]["value"]) {
		t.Fatalf("dead letter round trip:\n %v\n %v", again[0]["value"], again[1]["value"])
	}

	raw := e.consume(t, console.ConsumeOptions{Topics: []string{schemas.PaymentDLQ.Name}, Raw: true}, 1)[0]
	if raw["value"] != base64.StdEncoding.EncodeToString(dl.Value) || raw["error_class"] != nil {
		t.Fatalf("--raw printed %v", raw)
	}
}

// TestReadCommittedHidesAbortedRecords: what a service would never see, the
// console does not show either, unless asked.
func TestReadCommittedHidesAbortedRecords(t *testing.T) {
	e := start(t)
	p := schemas.PaymentSucceeded{PaymentID: "5f0c1d7e-3b7a-4a51-9f51-6a1c3c1f2b10", UserID: 1,
		Cart: []schemas.CartItem{{Name: "x", UnitPriceCents: 1, Quantity: 1}}, TotalCents: 1, PaidAt: time.Now()}
	rec, err := schemas.Payments.Codec(e.cat).Record(&p)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.stack.Brokers...), kgo.TransactionalID("console-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx(t), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx(t), kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	uncommitted := e.consume(t, console.ConsumeOptions{Topics: []string{schemas.Payments.Name}, ReadUncommitted: true}, 1)
	if uncommitted[0]["value"].(map[string]any)["payment_id"] != p.PaymentID {
		t.Fatalf("read_uncommitted: %v", uncommitted[0])
	}
	var out bytes.Buffer
	n, err := console.Consume(ctx(t), e.reg, console.ConsumeOptions{Brokers: e.stack.Brokers, Topics: []string{schemas.Payments.Name},
		FromBeginning: true, Idle: 2 * time.Second}, &out)
	if err != nil || n != 0 {
		t.Fatalf("read_committed printed %d records (%v):\n%s", n, err, out.String())
	}
}

// TestGroupResumes: with --group, a second run starts where the first
// stopped.
func TestGroupResumes(t *testing.T) {
	e := start(t)
	e.produce(t, console.ProduceOptions{Topic: schemas.Payments.Name, Key: "same"}, strings.Repeat(payment+"\n", 3))
	opts := console.ConsumeOptions{Topics: []string{schemas.Payments.Name}, Group: "console-test"}
	first := e.consume(t, opts, 2)
	second := e.consume(t, opts, 1)
	if first[0]["offset"] != 0.0 || first[1]["offset"] != 1.0 || second[0]["offset"] != 2.0 {
		t.Fatalf("offsets %v %v then %v, want 0 1 then 2", first[0]["offset"], first[1]["offset"], second[0]["offset"])
	}
}

// TestProduceWithV2: the schema challenge from the console. A producer on
// v2 writes currency; the console shows it; the order service's v1 codec
// still reads the payment; the incompatible variant is refused.
func TestProduceWithV2(t *testing.T) {
	e := start(t)
	_, err := console.Produce(ctx(t), e.reg, console.ProduceOptions{Brokers: e.stack.Brokers, Topic: schemas.Payments.Name,
		Schema: "../../schemas/evolution/payment_succeeded_v2_incompatible.avsc"}, strings.NewReader(payment), &bytes.Buffer{})
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 409 {
		t.Fatalf("incompatible schema: err = %v, want HTTP 409", err)
	}

	v2line := strings.Replace(payment, `"total_cents": 203880,`, `"total_cents": 203880, "currency": "USD",`, 1)
	sent, res := e.produce(t, console.ProduceOptions{Topic: schemas.Payments.Name,
		Schema: "../../schemas/evolution/payment_succeeded_v2.avsc"}, v2line+"\n")
	if res.Version != 2 || res.SchemaID == schemas.Payments.Codec(e.cat).SchemaID() {
		t.Fatalf("v2 produce used %+v", res)
	}
	// latest is now v2; a line without currency takes its default.
	_, latest := e.produce(t, console.ProduceOptions{Topic: schemas.Payments.Name}, payment+"\n")
	if latest.Version != 2 {
		t.Fatalf("latest is version %d, want 2", latest.Version)
	}
	_, build := e.produce(t, console.ProduceOptions{Topic: schemas.Payments.Name, Schema: "build"}, payment+"\n")
	if build.Version != 1 || build.SchemaID != schemas.Payments.Codec(e.cat).SchemaID() {
		t.Fatalf("build schema is %+v, want version 1", build)
	}

	// The console shows each record as written: v2 ones with their
	// currency, typed or defaulted; the v1 one without.
	var got []string
	for _, l := range e.consume(t, console.ConsumeOptions{Topics: []string{schemas.Payments.Name}}, 3) {
		c, ok := l["value"].(map[string]any)["currency"]
		switch id := int(l["schema_id"].(float64)); {
		case id == res.SchemaID && ok:
			got = append(got, "v2 "+c.(string))
		case id == build.SchemaID && !ok:
			got = append(got, "v1")
		default:
			t.Fatalf("line %v", l)
		}
	}
	slices.Sort(got)
	if want := []string{"v1", "v2 EUR", "v2 USD"}; !slices.Equal(got, want) {
		t.Fatalf("consumed %v, want %v", got, want)
	}

	r := fetch(t, e.stack.Brokers, schemas.Payments.Name, sent[0].Partition, sent[0].Offset)
	p, err := schemas.Payments.Codec(e.cat).Decode(ctx(t), r.Value)
	if err != nil || p.TotalCents != 203880 {
		t.Fatalf("v1 codec on v2 data: %+v, %v", p, err)
	}
}
