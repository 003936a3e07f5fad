package email

import "github.com/blackfriday-kafka/shop/schemas"

// CrashAfterSend makes the loop of cfg stop, as SIGKILL would, right
// after the mail server took an email that crash names, before the offset
// commits; Run then returns ErrCrash.
func CrashAfterSend(cfg *CourierConfig, crash func(*schemas.EmailSent) bool) {
	cfg.crashAfterSend = crash
}

// ErrCrash is what Run returns after such a crash.
var ErrCrash = errCrash
