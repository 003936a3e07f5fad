package email_test

import (
	"fmt"
	"io"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/email"
	"github.com/blackfriday-kafka/shop/services/shop/shoptest"
)

// laneServer is a mail server that holds each message until together
// messages are in its hands at once (or a while has passed), answers 451
// once to the message with Message-ID flaky, and notes the order in which
// each recipient's messages came and how many came at most at once.
type laneServer struct {
	together int
	flaky    string
	hold     time.Duration // each message, before the reply

	mu      sync.Mutex
	cond    *sync.Cond
	inData  int
	most    int
	refused bool
	order   map[string][]string // Message-IDs by recipient, in the order taken
	taken   map[string]int      // by Message-ID
}

func startLaneServer(t *testing.T, together int, flaky string) (*laneServer, string) {
	t.Helper()
	s := &laneServer{together: together, flaky: flaky, order: map[string][]string{}, taken: map[string]int{}}
	s.cond = sync.NewCond(&s.mu)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(s)
	srv.Domain = "lanes.localhost"
	srv.AllowInsecureAuth = true
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s, ln.Addr().String()
}

// rounds are each emails for every one of users, one round after another:
// user u's n-th is rounds[n*users+u-1].
func rounds(users, each int) []*schemas.EmailSent {
	var emails []*schemas.EmailSent
	for n := range each {
		for u := range users {
			emails = append(emails, queued(int64(u+1), fmt.Sprintf("pay-%d-%d", u+1, n+1)))
		}
	}
	return emails
}

// takenOnce checks that the server took each of emails once; s.mu is held.
func (s *laneServer) takenOnce(t *testing.T, emails []*schemas.EmailSent) {
	t.Helper()
	for _, e := range emails {
		if n := s.taken[email.MessageID(e.EmailID)]; n != 1 {
			t.Errorf("email %s of user %d taken %d times, want once", e.EmailID, e.UserID, n)
		}
	}
}

func (s *laneServer) NewSession(*smtp.Conn) (smtp.Session, error) { return &laneSession{s: s}, nil }

type laneSession struct {
	s  *laneServer
	to string
}

func (l *laneSession) Reset()                                    {}
func (l *laneSession) Logout() error                             { return nil }
func (l *laneSession) Mail(string, *smtp.MailOptions) error      { return nil }
func (l *laneSession) Rcpt(to string, _ *smtp.RcptOptions) error { l.to = to; return nil }

func (l *laneSession) Data(r io.Reader) error {
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, msg.Body); err != nil {
		return err
	}
	id := strings.Trim(msg.Header.Get("Message-ID"), "<>")
	s := l.s
	time.Sleep(s.hold)
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == s.flaky && !s.refused {
		s.refused = true
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.inData++
	s.most = max(s.most, s.inData)
	s.cond.Broadcast()
	for deadline := time.Now().Add(time.Second); s.inData < s.together && time.Now().Before(deadline); {
		go func() { time.Sleep(50 * time.Millisecond); s.cond.Broadcast() }()
		s.cond.Wait()
	}
	s.inData--
	s.order[l.to] = append(s.order[l.to], id)
	s.taken[id]++
	return nil
}

// The emails of different users go out side by side, more at once than
// email-sent has partitions, and each user's in order. When one fails
// (451), the others that went out meanwhile are not sent again when the
// failed one is.
func TestUsersGoSideBySide(t *testing.T) {
	stack, cat := shoptest.Cluster(t)
	const users, each = 24, 3
	emails := rounds(users, each)
	flaky := emails[users+4] // user 5's second
	srv, addr := startLaneServer(t, 6, email.MessageID(flaky.EmailID))
	outbox(t, stack, cat, true, emails...)
	run(t, stack, cat, addr, nil)
	drained(t, stack, 60*time.Second)

	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.most <= 3 {
		t.Errorf("at most %d messages were in the mail server's hands at once, want more than email-sent's 3 partitions", srv.most)
	}
	if !srv.refused {
		t.Fatal("the flaky email was never tried")
	}
	srv.takenOnce(t, emails)
	for u := range users {
		to := emails[u].To
		var want []string
		for n := range each {
			want = append(want, email.MessageID(emails[n*users+u].EmailID))
		}
		if got := srv.order[to]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("user %d's emails came in the order %v, want %v", u+1, got, want)
		}
	}
	t.Logf("%d emails, at most %d at once in the mail server's hands", len(emails), srv.most)
}

// A delivery loop stopped gracefully in the middle of its lanes' work
// sends nothing twice: it cuts each partition after the last email a lane
// began, the lanes behind catch up to the cut, and the offsets it commits
// cover everything it sent.
func TestGracefulStopSendsNothingTwice(t *testing.T) {
	stack, cat := shoptest.Cluster(t)
	const users, each = 24, 4
	emails := rounds(users, each)
	srv, addr := startLaneServer(t, 1, "")
	srv.hold = 20 * time.Millisecond
	outbox(t, stack, cat, true, emails...)
	first := run(t, stack, cat, addr, func(cfg *email.CourierConfig) { cfg.Budget = 30 * time.Millisecond })
	shoptest.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		if len(srv.taken) < len(emails)/4 {
			return fmt.Errorf("%d emails taken", len(srv.taken))
		}
		return nil
	})
	first.stop(t)
	srv.mu.Lock()
	atStop := len(srv.taken)
	srv.mu.Unlock()
	run(t, stack, cat, addr, nil)
	drained(t, stack, 60*time.Second)

	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.takenOnce(t, emails)
	t.Logf("%d of %d emails taken when the first loop stopped; each once in the end", atStop, len(emails))
}
