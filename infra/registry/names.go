package registry

import (
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxSubject bounds a subject's name, in characters: the longest Kafka
// topic name (249) with "-value" (TopicNameStrategy's suffix) is 255.
const maxSubject = 255

// defaultContext is the one context this registry has, as Confluent names
// it. Confluent's other contexts (/contexts/.other/…, and subjects
// qualified as ":.other:name") are refused: the registry does not keep
// them apart, and serving them from the default context would mix
// schemas a client meant to keep apart.
const defaultContext = "."

// invalidSubject is Confluent's answer to a subject name it refuses.
func invalidSubject(subject, format string, a ...any) *apiError {
	return errf(http.StatusUnprocessableEntity, 42208, "The specified subject %q is not valid: %s", subject, fmt.Sprintf(format, a...))
}

// checkSubject refuses a subject name (from a path; "" when it has none)
// that is not valid UTF-8, holds a control character, is longer than
// maxSubject, or names another context.
func checkSubject(subject string) *apiError {
	if subject == "" {
		return nil
	}
	if !utf8.ValidString(subject) {
		return invalidSubject(subject, "not UTF-8")
	}
	if n := utf8.RuneCountInString(subject); n > maxSubject {
		return invalidSubject(subject[:32]+"…", "%d characters long; at most %d are allowed", n, maxSubject)
	}
	for i, c := range subject {
		if unicode.IsControl(c) {
			return invalidSubject(subject, "control character %U at byte %d; a subject name holds none", c, i)
		}
	}
	if strings.HasPrefix(subject, ":.") {
		return invalidSubject(subject, "a subject qualified with a context; this registry has the default context %q only", defaultContext)
	}
	return nil
}

// inContext serves /contexts/./… as …, the default context's own paths,
// and refuses the paths of any other context with 422 (error code 42208)
// instead of serving them from the default one.
func inContext(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rest, ok := strings.CutPrefix(req.URL.Path, "/contexts/")
		i := strings.IndexByte(rest, '/')
		if !ok || i < 0 {
			next.ServeHTTP(w, req)
			return
		}
		if ctx := rest[:i]; ctx != defaultContext {
			writeError(w, errf(http.StatusUnprocessableEntity, 42208,
				"Context %q is not supported: this registry has the default context %q only", ctx, defaultContext))
			return
		}
		req = req.Clone(req.Context())
		req.URL.Path = rest[i:]
		req.URL.RawPath = ""
		next.ServeHTTP(w, req)
	})
}
