package openloop

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// fakePayment is what the fake payment service of the check's tests does
// with payment i: how many records it writes to payment-successful, its
// answer, and whether it writes an order to order-created.
type fakePayment struct {
	charges int
	status  int
	order   bool
}

// fakeShop is a payment service, and the order step behind it, reduced to
// the records they write, keyed by user as the shop keys them. For every
// tenth payment it also writes a record of another user, 42, which is no
// part of the run.
func fakeShop(t *testing.T, cl *kgo.Client, does func(i int) fakePayment) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := paymentOf(t, r)
		d := does(i)
		key := []byte(strconv.FormatInt(firstUser+int64(i), 10))
		var recs []*kgo.Record
		for range d.charges {
			recs = append(recs, &kgo.Record{Topic: schemas.Payments.Name, Key: key, Value: []byte("payment")})
		}
		if d.order {
			recs = append(recs, &kgo.Record{Topic: schemas.Orders.Name, Key: key, Value: []byte("order")})
		}
		if i%10 == 0 {
			recs = append(recs, &kgo.Record{Topic: schemas.Payments.Name, Key: []byte("42"), Value: []byte("someone else")},
				&kgo.Record{Topic: schemas.Orders.Name, Key: []byte("42"), Value: []byte("someone else")})
		}
		if err := cl.ProduceSync(r.Context(), recs...).FirstErr(); err != nil {
			t.Errorf("payment %d: %v", i, err)
		}
		if d.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		w.WriteHeader(d.status)
		_, _ = io.WriteString(w, "{}")
	}))
}

// TestCheckMatchesRecordsToPayments: the check tells, by the records' keys,
// which payments were charged without a 200, charged twice, or answered
// 200 without an order. A shop that answers every payment it writes, and
// orders each, has none of them; records of other users, and of the run's
// first user before the run, do not count.
func TestCheckMatchesRecordsToPayments(t *testing.T) {
	stack, _ := shoptest.Cluster(t)
	cl, _ := shoptest.Clients(t, stack)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	before := strconv.FormatInt(firstUser, 10)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: schemas.Payments.Name, Key: []byte(before)},
		&kgo.Record{Topic: schemas.Payments.Name, Key: []byte(before)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	o := Options{Rate: 200, For: 500 * time.Millisecond, GiveUp: 5 * time.Second, FirstUser: firstUser,
		Brokers: stack.Brokers, Drain: 3 * time.Second}

	t.Run("every charge answered and ordered", func(t *testing.T) {
		srv := fakeShop(t, cl, func(int) fakePayment { return fakePayment{charges: 1, status: http.StatusOK, order: true} })
		defer srv.Close()
		o.URL = srv.URL
		rep, err := Run(ctx, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := Checked{Charged: 100, Drained: true}
		if rep.OK != 100 || rep.Check == nil || *rep.Check != want {
			t.Fatalf("%d ok, check %+v, want 100 ok and %+v", rep.OK, rep.Check, want)
		}
		if line := rep.Line(); !strings.HasSuffix(line, " charged=100 charged_unanswered=0 lost=0") {
			t.Fatalf("line %q", line)
		}
	})

	// The control: the same check finds each kind of defect, exactly.
	t.Run("charges without a 200, twice, and 200s without an order", func(t *testing.T) {
		srv := fakeShop(t, cl, func(i int) fakePayment {
			switch i % 4 {
			case 3:
				return fakePayment{charges: 1, status: http.StatusServiceUnavailable}
			case 2:
				return fakePayment{charges: 2, status: http.StatusOK, order: true}
			case 1:
				return fakePayment{charges: 1, status: http.StatusOK}
			}
			return fakePayment{charges: 1, status: http.StatusOK, order: true}
		})
		defer srv.Close()
		o.URL = srv.URL
		rep, err := Run(ctx, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := Checked{Charged: 125, ChargedUnanswered: 25, Duplicates: 25, Lost: 25, Drained: false}
		if rep.OK != 75 || rep.Shed != 25 || rep.Check == nil || *rep.Check != want {
			t.Fatalf("%d ok, %d shed, check %+v, want 75, 25 and %+v", rep.OK, rep.Shed, rep.Check, want)
		}
	})
}
