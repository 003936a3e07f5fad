package txn

import "time"

// SetEndTimeout shortens the bound on ending a transaction for a test, and
// returns how to restore it.
func SetEndTimeout(d time.Duration) (restore func()) {
	old := endTimeout
	endTimeout = d
	return func() { endTimeout = old }
}
