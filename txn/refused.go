package txn

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
)

type refusedKey struct{}

// Refused returns the error with which Kafka refused, for good, the outputs
// the handler returned for this record on an earlier try, or nil. A handler
// (or its middleware) that gets one must return something else: the same
// outputs would be refused again.
func Refused(ctx context.Context) error {
	err, _ := ctx.Value(refusedKey{}).(error)
	return err
}

func withRefusal(ctx context.Context, err error) context.Context {
	return context.WithValue(ctx, refusedKey{}, err)
}

// permanent reports whether a produce error can never succeed on retry: the
// record itself is what the broker, or the client before it, refuses.
func permanent(err error) bool {
	for _, never := range []error{
		kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord,
		kerr.CorruptMessage, kerr.InvalidTimestamp,
	} {
		if errors.Is(err, never) {
			return true
		}
	}
	return false
}
