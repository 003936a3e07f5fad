package analytics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/shop"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// chromium is Debian's chromium package; scripts/ci/install-chromium
// installs it.
const chromium = "/usr/bin/chromium"

// TestDashboardShowsWhatAnalyticsReports loads the dashboard in headless
// Chromium, pays three times, and waits until the page shows the figures
// that /analytics reports: the same total revenue, to the cent, and the
// same counts. It keeps a screenshot in .artifacts/dashboard.png.
func TestDashboardShowsWhatAnalyticsReports(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("no browser to test the dashboard in: %s is missing; install Debian's chromium package (scripts/ci/install-chromium)", chromium)
	}
	env := shoptest.Start(t, shop.Options{}, nil)
	analytics := env.Shop.URL("analytics")
	page := browser(t)

	if err := chromedp.Do(page, chromedp.Navigate(analytics+"/")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, page, "the empty shop, live", 20*time.Second,
		`document.querySelector("#status").dataset.state === "live" && document.querySelector("#revenue").textContent === "€0.00"`)

	for _, body := range []string{
		`{"user_id": 42, "cart": [{"name": "MacBook", "price": 1999, "quantity": 1}]}`,
		`{"user_id": 7, "cart": [{"name": "Mouse", "price": 19.99, "quantity": 3}, {"name": "Pad", "price": 0.1, "quantity": 1}]}`,
		`{"user_id": 42, "cart": [{"name": "Cable", "price": 9.95, "quantity": 2}]}`,
	} {
		resp, err := http.Post(env.Shop.URL("payment")+"/payment", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /payment: %d", resp.StatusCode)
		}
	}

	// And a poison pill, raw JSON instead of Avro, for the DLQ panel.
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pill := &kgo.Record{Topic: schemas.Payments.Name, Key: []byte("13"), Value: []byte(`{"user_id": 13, "cart": "cheap"}`)}
	if err := cl.ProduceSync(context.Background(), pill).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// What /analytics says once the three orders and emails are in.
	var report struct {
		TotalPayments int              `json:"total_payments"`
		TotalOrders   int              `json:"total_orders"`
		TotalEmails   int              `json:"total_emails"`
		TotalRevenue  json.Number      `json:"total_revenue"`
		UniqueUsers   int              `json:"unique_users"`
		DLQMessages   int              `json:"dlq_messages"`
		DLQByClass    map[string]int64 `json:"dlq_by_class"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for report.TotalEmails < 3 || report.DLQMessages < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("/analytics after 15s: %+v, want 3 emails and a dead letter", report)
		}
		time.Sleep(100 * time.Millisecond)
		getJSON(t, analytics+"/analytics", &report)
	}
	if report.TotalRevenue != "2078.97" || report.DLQByClass["bad-magic-byte"] != 1 {
		t.Fatalf("/analytics: %+v, want total_revenue 2078.97 and one bad-magic-byte dead letter", report)
	}

	revenue := euros(report.TotalRevenue.String())
	waitFor(t, page, "the figures of /analytics", 10*time.Second, fmt.Sprintf(
		`[["#revenue", %q], ["#payments", "%d"], ["#orders", "%d"], ["#emails", "%d"], ["#users", "%d"], ["#dlq", "%d"],
		  ['#dlq-classes [data-class="bad-magic-byte"] .count', "1"]]
			.every(([sel, want]) => document.querySelector(sel).textContent === want)`,
		revenue, report.TotalPayments, report.TotalOrders, report.TotalEmails, report.UniqueUsers, report.DLQMessages))

	// The door: the three payments admitted, none shed, the bound at its
	// start.
	waitFor(t, page, "the payment service's admission", 10*time.Second,
		`document.querySelector("#edge-admitted").textContent === "3 admitted" &&
		 document.querySelector("#edge-shed").dataset.shed === "0" &&
		 document.querySelector("#edge-limit").dataset.limit === "256"`)

	// No mail server in this shop: the three emails wait, and the tile
	// says so.
	waitFor(t, page, "three emails undelivered", 10*time.Second,
		`document.querySelector("#emails-undelivered").dataset.undelivered === "3" &&
		 document.querySelector("#emails-undelivered").textContent.startsWith("3 undelivered, oldest ")`)

	// The groups panel names the instance holding each partition, and the
	// charts are drawn.
	waitFor(t, page, "each partition of both groups with its instance", 15*time.Second,
		`["order-service-group", "email-service-group"].every((g) => {
			const who = [...document.querySelectorAll('tr[data-group="' + g + '"] td.part .who')].map((e) => e.textContent);
			return who.length === 3 && who.every((w) => w === g.replace("-group", "-1"));
		})`)
	// One instance holds every partition of analytics' own group, and
	// the line under the header says the figures count them all.
	waitFor(t, page, "analytics' partitions held by its one instance", 15*time.Second,
		`(() => {
			const who = [...document.querySelectorAll('tr[data-group="analytics-service-group"] td.part .who')].map((e) => e.textContent);
			const cov = document.querySelector("#coverage");
			return who.length >= 3 && who.every((w) => w === "analytics-service-1") &&
				cov.dataset.complete === "true" && cov.textContent.includes("analytics-service-1 holds 0, 1, 2") &&
				cov.textContent.includes("all 3 partitions counted");
		})()`)
	waitFor(t, page, "two charts with the payments in them", 10*time.Second,
		`document.querySelectorAll(".uplot canvas").length === 2 && document.querySelector("#payments-rate").textContent === "3 / min"`)

	png, err := chromedp.Run(page, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard shows revenue %s as /analytics does; screenshot: %s", revenue, keep(t, "dashboard.png", png))
}

// browser starts headless Chromium for the test and stops it, and fails
// the test if the page throws.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // as root in CI
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900), // a laptop screen
		chromedp.Flag("hide-scrollbars", true),
	)
	allocCtx, stopBrowser := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(stopBrowser) // kills Chromium and waits for it
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)

	var mu sync.Mutex
	var thrown []string
	err := chromedp.Listen(ctx, func(ev any) { // starts the browser
		if ex, ok := ev.(*runtime.EventExceptionThrown); ok && ex.ExceptionDetails != nil {
			d := ex.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			mu.Lock()
			thrown = append(thrown, fmt.Sprintf("%s (%s:%d)", msg, d.URL, d.LineNumber+1))
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range thrown {
			t.Errorf("the page threw: %s", e)
		}
	})
	return ctx
}

// waitFor polls a JavaScript condition in the page until it holds.
func waitFor(t *testing.T, page context.Context, what string, within time.Duration, cond string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(page, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			ctx, cancel := context.WithTimeout(page, 5*time.Second)
			shown, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
			cancel()
			t.Fatalf("after %v the dashboard does not show %s (err %v); it shows:\n%s", within, what, err, shown)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// euros formats "2078.97" as the dashboard does: "€2,078.97".
func euros(amount string) string {
	whole, cents, _ := strings.Cut(amount, ".")
	var b strings.Builder
	for i, d := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return "€" + b.String() + "." + (cents + "00")[:2]
}

func getJSON(t *testing.T, url string, into any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// keep writes an artifact of the test run to .artifacts/ at the top of the
// module (git-ignored) and returns its path.
func keep(t *testing.T, name string, data []byte) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			dir = t.TempDir() // not in the module: keep it for this run only
			break
		}
		dir = parent
	}
	dir = filepath.Join(dir, ".artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
