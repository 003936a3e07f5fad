package mailbox

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
)

// routes are the inbox: the page, and the part of Mailpit's API that tools
// read.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /api/v1/messages", s.list)
	mux.HandleFunc("DELETE /api/v1/messages", func(w http.ResponseWriter, _ *http.Request) {
		s.Delete()
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /api/v1/message/{id}", func(w http.ResponseWriter, r *http.Request) {
		m, ok := s.find(r.PathValue("id"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, struct {
			Summary
			Text string `json:"Text"`
		}{m.Summary, m.Text})
	})
	mux.HandleFunc("GET /api/v1/message/{id}/raw", func(w http.ResponseWriter, r *http.Request) {
		m, ok := s.find(r.PathValue("id"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(m.Raw)
	})
	mux.HandleFunc("GET /{$}", s.page)
	return mux
}

// messagesPage is GET /api/v1/messages, as Mailpit answers it.
type messagesPage struct {
	Total         int       `json:"total"`
	Count         int       `json:"count"`
	MessagesCount int       `json:"messages_count"`
	Start         int       `json:"start"`
	Messages      []Summary `json:"messages"`
}

// list answers the newest messages first, from start, at most limit of
// them (Mailpit's default 50; 0 for all).
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	start, ok := whole(w, r, "start", 0)
	if !ok {
		return
	}
	limit, ok := whole(w, r, "limit", 50)
	if !ok {
		return
	}
	all := s.Messages()
	slices.Reverse(all)
	page := messagesPage{Total: len(all), MessagesCount: len(all), Start: start, Messages: []Summary{}}
	for i := max(start, 0); i < len(all) && (limit <= 0 || len(page.Messages) < limit); i++ {
		page.Messages = append(page.Messages, all[i].Summary)
	}
	page.Count = len(page.Messages)
	writeJSON(w, page)
}

// whole reads the query parameter name as a whole number from 0 to a
// million (def when absent), or answers 400 naming it.
func whole(w http.ResponseWriter, r *http.Request, name string, def int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1_000_000 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = fmt.Fprintf(w, "{\"error\":%q}\n", name+" must be a whole number from 0 to 1000000")
		return 0, false
	}
	return n, true
}

func (s *Server) find(id string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs {
		if m.ID == id {
			return *m, true
		}
	}
	return Message{}, false
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// pageShows is how many messages the page lists.
const pageShows = 100

var pageTemplate = template.Must(template.New("inbox").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Inbox · Black Friday shop</title>
<meta http-equiv="refresh" content="5">
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222 }
table { border-collapse: collapse; width: 100% }
th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid #ddd; vertical-align: top }
td.id { font-family: ui-monospace, monospace; font-size: 12px; color: #555 }
pre { margin: .3em 0 0; white-space: pre-wrap; color: #444 }
.muted { color: #777 }
</style></head><body>
<h1>Inbox <span class="muted">· {{.Total}} message{{if ne .Total 1}}s{{end}}, newest first</span></h1>
<p class="muted">SMTP on {{.SMTP}} · JSON: <a href="/api/v1/messages">/api/v1/messages</a> (Mailpit's API) · refreshes every 5 s</p>
<table><thead><tr><th>received</th><th>to</th><th>subject and text</th><th>Message-ID</th></tr></thead><tbody>
{{range .Messages}}<tr><td>{{.Created.Format "15:04:05"}}</td><td>{{range .To}}{{.Address}} {{end}}</td>
<td><a href="/api/v1/message/{{.ID}}/raw">{{.Subject}}</a><pre>{{.Text}}</pre></td><td class="id">{{.MessageID}}</td></tr>
{{else}}<tr><td colspan="4" class="muted">no message yet</td></tr>{{end}}
</tbody></table></body></html>
`))

// page is the inbox as a person reads it.
func (s *Server) page(w http.ResponseWriter, _ *http.Request) {
	all := s.Messages()
	slices.Reverse(all)
	data := struct {
		Total    int
		SMTP     string
		Messages []Message
	}{len(all), s.SMTPAddr, all[:min(len(all), pageShows)]}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pageTemplate.Execute(w, data)
}
