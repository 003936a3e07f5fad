package payment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/txn/loop"
	"github.com/blackfriday-kafka/shop/txn/view"
)

// HeaderIdempotencyKey names the request a client may retry: the same user,
// key and body are one payment, charged once, whatever the number of tries
// and the instance that gets each (Stripe's header, and the IETF HTTP API
// working group's draft of it).
const HeaderIdempotencyKey = "Idempotency-Key"

// maxKey is the longest key: the draft leaves it to the server.
const maxKey = 255

// parseKey reads the header's value: 1 to 255 printable ASCII characters,
// or the same quoted as a structured-field string ("…", with \" and \\),
// as the draft writes it.
func parseKey(v string) (string, *schemas.FieldError) {
	bad := func(why string) (string, *schemas.FieldError) {
		return "", &schemas.FieldError{Field: HeaderIdempotencyKey, Reason: why}
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(v)-1; i++ {
			c := v[i]
			if c == '"' {
				return bad(`must escape a quote inside a quoted key as \"`)
			}
			if c == '\\' {
				if i++; i == len(v)-1 || (v[i] != '"' && v[i] != '\\') {
					return bad(`may escape only \" and \\ inside a quoted key`)
				}
				c = v[i]
			}
			b.WriteByte(c)
		}
		v = b.String()
	}
	switch {
	case v == "":
		return bad("must not be empty")
	case len(v) > maxKey:
		return bad("must be at most 255 characters, is " + strconv.Itoa(len(v)))
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return bad("must be printable ASCII; byte " + strconv.Itoa(i) + " is not")
		}
	}
	return v, nil
}

// fingerprint identifies what a request asks for, whatever its JSON looks
// like: the same user and cart give the same fingerprint.
func fingerprint(req *Request) string {
	h := sha256.New()
	b := strconv.AppendInt(nil, req.UserID, 10)
	for _, it := range req.Cart {
		b = append(b, 0)
		b = strconv.AppendQuote(b, it.Name)
		b = strconv.AppendInt(append(b, ' '), it.UnitPriceCents, 10)
		b = strconv.AppendInt(append(b, ' '), int64(it.Quantity), 10)
	}
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// ledger is what the payment service answered to each key: the table of
// the state topic payment-requests, keyed by user and key, which every
// instance reads to its end at start and then follows, kept on disk under
// the instance's STATE_DIR so that a restart reads only what came since.
// An answer is written (acks=all) before the client gets it, so any
// answered request is in the ledger; a retry on any instance, or after a
// restart, gets the same answer.
type ledger struct {
	table  *view.Table
	window time.Duration
	log    *slog.Logger

	mu       sync.Mutex
	inFlight map[string]string // key -> fingerprint, on this instance
}

// answer is a ledger entry.
type answer struct {
	Fingerprint string          `json:"fingerprint"`
	Response    json.RawMessage `json:"response"` // the 200 body
	At          time.Time       `json:"at"`
}

// claim decides what to do with a request for key: replay a past answer,
// refuse (409: the first request is still waiting for Kafka; 422: another
// body under this key; 503: the ledger could not be read), or go ahead,
// after which release must be called.
func (l *ledger) claim(key, fp string) (replay []byte, status int) {
	if replay, status, ok := l.answered(key, fp); ok {
		return replay, status
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if other, ok := l.inFlight[key]; ok {
		if other != fp {
			return nil, 422
		}
		return nil, 409
	}
	// The first request may have been answered and released between the
	// look above and the lock: look again before this one goes ahead.
	if replay, status, ok := l.answered(key, fp); ok {
		return replay, status
	}
	l.inFlight[key] = fp
	return nil, 0
}

// answered looks key up in the ledger: ok when it decides the request, a
// replay of the answer within the window (200), another body under the key
// (422), or a ledger that could not be read (503).
func (l *ledger) answered(key, fp string) (replay []byte, status int, ok bool) {
	b, found, err := l.table.Get(key)
	if err != nil {
		l.log.Error("the ledger of Idempotency-Keys could not be read", "err", err)
		return nil, 503, true
	}
	if !found {
		return nil, 0, false
	}
	var a answer
	if err := json.Unmarshal(b, &a); err != nil || time.Since(a.At) >= l.window {
		return nil, 0, false
	}
	if a.Fingerprint != fp {
		return nil, 422, true
	}
	return a.Response, 200, true
}

func (l *ledger) release(key string) {
	l.mu.Lock()
	delete(l.inFlight, key)
	l.mu.Unlock()
}

// record writes the answer to key.
func (l *ledger) record(ctx context.Context, key, fp string, response []byte) error {
	b, err := json.Marshal(answer{Fingerprint: fp, Response: response, At: time.Now().UTC()})
	if err != nil {
		return err
	}
	return l.table.Put(ctx, key, b)
}

// AnswerRecord is the ledger's record of the answer to req under key, as
// the service writes it to payment-requests at at, once the payment's
// record, written, was acknowledged: what a history written straight to
// the topic holds (the bench's), which a retry of req under key replays.
func AnswerRecord(req *Request, key string, written *kgo.Record, at time.Time) (*kgo.Record, error) {
	p := schemas.PaymentSucceeded{PaymentID: schemas.PaymentID(req.UserID, key), UserID: req.UserID, Cart: req.Cart,
		TotalCents: schemas.CartTotal(req.Cart), PaidAt: at}
	b, err := json.Marshal(answer{Fingerprint: fingerprint(req), Response: answerOf(&p, written), At: at.UTC()})
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: schemas.PaymentRequests.Name, Key: []byte(ledgerKey(req.UserID, key)), Value: b, Timestamp: at}, nil
}

// expireStep is how many keys the sweep forgets at a time: a step holds
// the store's writes for one batch, so payments never wait long on it.
const expireStep = 1000

// sweep forgets, every minute (a quarter of a shorter window), the keys
// older than the window, with a tombstone each: compaction then drops them
// from the topic too, so the ledger's size, on disk and in Kafka, is what
// the window holds. It goes from the oldest, in steps, through the store's
// index of the answers by time: it reads only what it forgets.
func (l *ledger) sweep(ctx context.Context) error {
	return loop.Every(ctx, min(time.Minute, l.window/4), func(now time.Time) {
		for ctx.Err() == nil {
			n, err := l.table.Expire(ctx, now.Add(-l.window), expireStep)
			if err != nil {
				if ctx.Err() == nil {
					l.log.Warn("forgetting expired Idempotency-Keys failed", "err", err)
				}
				return
			}
			if n < expireStep {
				return
			}
		}
	})
}

// ledgerKey is the ledger's key of a user's key: keys are the user's own.
func ledgerKey(userID int64, key string) string { return strconv.FormatInt(userID, 10) + "/" + key }
