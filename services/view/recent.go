package platform

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
)

// Recent keeps a count of everything added and the newest items, for views
// such as /orders that show the last ones first.
type Recent[T any] struct {
	mu    sync.RWMutex
	keep  int
	items []T // ring of the newest keep items
	next  int
	count int
}

// NewRecent keeps the newest keep items.
func NewRecent[T any](keep int) *Recent[T] {
	return &Recent[T]{keep: keep, items: make([]T, 0, keep)}
}

// Add records one more item.
func (r *Recent[T]) Add(v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count++
	if len(r.items) < r.keep {
		r.items = append(r.items, v)
		return
	}
	r.items[r.next] = v
	r.next = (r.next + 1) % r.keep
}

// Newest returns the total count and up to limit items, newest first.
func (r *Recent[T]) Newest(limit int) (int, []T) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := min(limit, len(r.items))
	out := make([]T, 0, n)
	for i := 0; i < n; i++ {
		// the newest item sits just before next
		idx := (r.next - 1 - i + 2*len(r.items)) % len(r.items)
		out = append(out, r.items[idx])
	}
	return r.count, out
}

// Limit reads ?limit= (default 100, at most 1000) for views.
func Limit(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 1000 {
		return 0, fmt.Errorf("limit must be a whole number from 0 to 1000")
	}
	return n, nil
}
