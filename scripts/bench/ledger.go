package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/blackfriday-kafka/shop/scripts/latency"
	"github.com/blackfriday-kafka/shop/services/payment"
)

// runLedger measures the payment service's ledger of Idempotency-Keys on
// a history of o.LedgerKeys answers in its IDEMPOTENCY_WINDOW (the window
// reaches back an hour past the history's first answer), written straight to
// payment-requests. A `shop payment` process starts on an empty STATE_DIR
// and builds its store from the topic: from the exec to /readyz 200
// (ledger_rebuild_s); it stops, and starts again on the store it left,
// reading only the tail: from the exec to /readyz 200 (ledger_ready_s).
// Then one client retries a uniform sample of the history's requests, each
// with its key and body, one after the other: each must be a replay, and
// their p99 is ledger_replay_p99_ms; last, that process's peak RSS
// (ledger_rss_mb).
func runLedger(ctx context.Context, o Options, h *history, p *progress, res *Results) error {
	if err := h.growAnswers(ctx, o.LedgerKeys, p); err != nil {
		return err
	}
	// An hour past the history's first answer: the starts below, a rebuild
	// of millions of answers included, all run before the oldest expires.
	window := (time.Since(h.start) + time.Hour).Truncate(time.Minute)
	state, err := os.MkdirTemp(o.LogDir, "ledger-state-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	env := []string{"IDEMPOTENCY_WINDOW=" + window.String(), "STATE_DIR=" + state}
	p.Printf("ledger: a payment service with IDEMPOTENCY_WINDOW=%s, reaching back to the %d answers of the history, its store in %s; load average %s",
		window, h.answered, state, loadAverage())

	start := func(what string) (*timed, time.Duration, error) {
		t, err := startTimed(o, "payment", "bench-ledger", false, env...)
		if err != nil {
			return nil, 0, err
		}
		ready, err := t.waitReady(ctx, 30*time.Minute)
		if err != nil {
			t.stop(timedGrace)
			return nil, 0, fmt.Errorf("%s: %w", what, err)
		}
		return t, ready, nil
	}
	t, rebuild, err := start("the start without a store")
	if err != nil {
		return err
	}
	rebuildKB := t.stop(timedGrace) // a graceful stop: the store covers everything read
	p.Printf("ledger: without a store, ready %s after the exec (the store built from the topic), peak RSS %.0f MB; load average %s",
		rebuild.Round(time.Millisecond), float64(rebuildKB)/1024, loadAverage())

	t, ready, err := start("the start on the store")
	if err != nil {
		return err
	}
	lat, err := replayAnswers(ctx, t.url, h.retries)
	kb := t.stop(timedGrace)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	p.Printf("ledger: on its store, ready %s after the exec; %d retries of the history's keys replayed, p50 %sms p99 %sms max %sms; peak RSS %.0f MB; load average %s",
		ready.Round(time.Millisecond), len(lat), ms(latency.Sorted(lat, 50)), ms(latency.Sorted(lat, 99)), ms(lat[len(lat)-1]),
		float64(kb)/1024, loadAverage())
	res.Add("ledger_keys", strconv.Itoa(h.answered))
	res.Add("ledger_rebuild_s", fmt.Sprintf("%.2f", rebuild.Seconds()))
	res.Add("ledger_ready_s", fmt.Sprintf("%.2f", ready.Seconds()))
	res.Add("ledger_rss_mb", fmt.Sprintf("%.0f", float64(kb)/1024))
	res.Add("ledger_replay_p99_ms", ms(latency.Sorted(lat, 99)))
	return nil
}

// replayAnswers posts each retry to the payment service at url, one after
// the other, and returns how long each took; each must be answered 200
// as a replay.
func replayAnswers(ctx context.Context, url string, retries []retry) ([]time.Duration, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	lat := make([]time.Duration, 0, len(retries))
	for _, r := range retries {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/payment", bytes.NewReader(r.body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(payment.HeaderIdempotencyKey, r.key)
		began := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took := time.Since(began)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Idempotent-Replayed") != "true" {
			return nil, fmt.Errorf("the retry of key %s was answered %d, replayed %q: not the first answer from the ledger",
				r.key, resp.StatusCode, resp.Header.Get("Idempotent-Replayed"))
		}
		lat = append(lat, took)
	}
	if len(lat) == 0 {
		return nil, fmt.Errorf("no retries to replay")
	}
	return lat, nil
}
