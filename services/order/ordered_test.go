package order

import (
	"strings"
	"testing"

	"github.com/blackfriday-kafka/shop/txn/store"
)

// TestTail: where the memory of a partition reads order-created from at an
// assignment: the tail after what its store covers, or the window again
// when the store has nothing of it or does not match the topic.
func TestTail(t *testing.T) {
	topic, other := [16]byte{1}, [16]byte{2}
	b := bounds{topic: topic, start: 100, end: 900, stable: 880, window: 300}
	for _, tc := range []struct {
		name   string
		mark   store.Mark
		held   bool
		from   int64
		forget bool
		why    string // in the reason; "" for none
	}{
		{"no store", store.Mark{}, false, 300, false, "no store"},
		{"the tail after the covered offset", store.Mark{Next: 500, Topic: topic}, true, 500, false, ""},
		{"covered up to the end", store.Mark{Next: 900, Topic: topic}, true, 900, false, ""},
		{"covered before the window: the window", store.Mark{Next: 200, Topic: topic}, true, 300, false, ""},
		{"covered at the topic's start", store.Mark{Next: 100, Topic: topic}, true, 300, false, ""},
		{"another topic of the same name", store.Mark{Next: 500, Topic: other}, true, 300, true, "another topic"},
		{"covered before the topic's start", store.Mark{Next: 99, Topic: topic}, true, 300, true, "now starts at 100"},
		{"covered past the topic's end", store.Mark{Next: 901, Topic: topic}, true, 300, true, "past the topic's end 900"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, forget, why := tail(tc.mark, tc.held, b)
			if from != tc.from || forget != tc.forget || (tc.why == "") != (why == "") || !strings.Contains(why, tc.why) {
				t.Fatalf("tail = %d, %v, %q; want %d, %v, %q", from, forget, why, tc.from, tc.forget, tc.why)
			}
		})
	}
}
