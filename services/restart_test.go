package services_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// TestShopOnDiskComesBackAfterARestart is make run, pay, Ctrl-C, make run:
// the whole shop, stopped and started again on its data directory, shows
// the same orders, emails and figures, and goes on from there. The control
// is FRESH=1, a new directory: the same start shows nothing.
func TestShopOnDiskComesBackAfterARestart(t *testing.T) {
	dir := t.TempDir()
	type view struct {
		orders, emails []string
		figures        map[string]string
	}
	read := func(s *shop.Shop) view {
		var orders struct {
			Orders []struct {
				OrderID string `json:"order_id"`
			} `json:"orders"`
		}
		var emails struct {
			Emails []struct {
				EmailID string `json:"email_id"`
			} `json:"emails_sent"`
		}
		var analytics map[string]any
		get(t, s.URL("order")+"/orders", &orders)
		get(t, s.URL("email")+"/emails", &emails)
		get(t, s.URL("analytics")+"/analytics", &analytics)
		v := view{figures: map[string]string{}}
		for _, o := range orders.Orders {
			v.orders = append(v.orders, o.OrderID)
		}
		for _, e := range emails.Emails {
			v.emails = append(v.emails, e.EmailID)
		}
		slices.Sort(v.orders)
		slices.Sort(v.emails)
		for _, k := range []string{"total_payments", "total_orders", "total_emails", "total_revenue", "unique_users"} {
			v.figures[k] = fmt.Sprint(analytics[k])
		}
		return v
	}
	// start is `make run` on dir: the embedded cluster and the four
	// services; stop is its Ctrl-C.
	start := func(dir string) (s *shop.Shop, stop func()) {
		t.Helper()
		stack, cat := shoptest.ClusterWith(t, infra.EmbeddedConfig{DataDir: dir})
		s = shoptest.Services(t, shoptest.Config(t, stack), cat, shop.Options{})
		return s, func() {
			if err := s.Stop(); err != nil {
				t.Errorf("services stopped with: %v", err)
			}
			stack.Close()
		}
	}
	payAll := func(s *shop.Shop, from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			body := fmt.Sprintf(`{"user_id": %d, "cart": [{"name": "Lamp", "price": 12.34, "quantity": %d}]}`, i, i)
			if code, out := post(t, s.URL("payment")+"/payment", body); code != http.StatusOK {
				t.Fatalf("payment %d: %d %v", i, code, out)
			}
		}
	}
	complete := func(s *shop.Shop, n int) view {
		t.Helper()
		var v view
		eventually(t, 10*time.Second, func() error {
			v = read(s)
			if len(v.orders) != n || len(v.emails) != n || v.figures["total_emails"] != fmt.Sprint(n) {
				return fmt.Errorf("%d orders, %d emails, analytics %v; want %d of each", len(v.orders), len(v.emails), v.figures, n)
			}
			return nil
		})
		return v
	}

	s, stop := start(dir)
	payAll(s, 1, 5)
	before := complete(s, 5)
	stop()

	s, stop = start(dir)
	eventually(t, 10*time.Second, func() error {
		after := read(s)
		if !slices.Equal(after.orders, before.orders) || !slices.Equal(after.emails, before.emails) || fmt.Sprint(after.figures) != fmt.Sprint(before.figures) {
			return fmt.Errorf("after the restart %+v, before %+v", after, before)
		}
		return nil
	})
	// And it goes on: a payment after the restart is the sixth order.
	payAll(s, 6, 6)
	if v := complete(s, 6); v.figures["total_revenue"] != "259.14" { // 12.34 * (1 + ... + 6)
		t.Fatalf("revenue after the restart: %v", v.figures)
	}
	stop()

	// The control, FRESH=1: a new directory holds nothing of it.
	s, stop = start(t.TempDir())
	defer stop()
	if v := read(s); len(v.orders) != 0 || len(v.emails) != 0 || v.figures["total_payments"] != "0" {
		t.Fatalf("a fresh directory shows %+v", v)
	}
}
