package mailbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client reads an inbox through Mailpit's API: Mailpit's own (make kafka-up,
// make up) or this package's server.
type Client struct {
	URL  string // such as http://localhost:8025
	HTTP *http.Client
}

// NewClient reads the inbox at url.
func NewClient(url string) *Client {
	return &Client{URL: strings.TrimRight(url, "/"), HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// listPage is how many messages one request of Messages asks for.
const listPage = 5000

// Messages returns every message of the inbox, newest first.
func (c *Client) Messages(ctx context.Context) ([]Summary, error) {
	var all []Summary
	for start := 0; ; {
		var page messagesPage
		if err := c.get(ctx, fmt.Sprintf("/api/v1/messages?start=%d&limit=%d", start, listPage), &page); err != nil {
			return nil, err
		}
		all = append(all, page.Messages...)
		start += len(page.Messages)
		if len(page.Messages) == 0 || start >= page.Total {
			return all, nil
		}
	}
}

// Raw is the message with API ID id as the server received it.
func (c *Client) Raw(ctx context.Context, id string) ([]byte, error) {
	var raw []byte
	err := c.do(ctx, "/api/v1/message/"+id+"/raw", func(r io.Reader) (err error) {
		raw, err = io.ReadAll(r)
		return err
	})
	return raw, err
}

// Ready is nil once the inbox answers /readyz.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, "/readyz", func(io.Reader) error { return nil })
}

// CountByMessageID counts the messages of the inbox by Message-ID.
func (c *Client) CountByMessageID(ctx context.Context) (map[string]int, error) {
	msgs, err := c.Messages(ctx)
	if err != nil {
		return nil, err
	}
	counts := make(map[string]int, len(msgs))
	for _, m := range msgs {
		counts[m.MessageID]++
	}
	return counts, nil
}

func (c *Client) get(ctx context.Context, path string, into any) error {
	return c.do(ctx, path, func(r io.Reader) error { return json.NewDecoder(r).Decode(into) })
}

func (c *Client) do(ctx context.Context, path string, read func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+path, nil)
	if err != nil {
		return err
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("inbox %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("inbox %s%s: HTTP %d %s", c.URL, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return read(resp.Body)
}
